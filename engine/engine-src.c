// SPDX-License-Identifier: MIT
/*
 * The source side of a migration: SETUP -> PRECOPY -> STOP_COPY -> COMMIT ->
 * DONE, or ROLLBACK.  The main thread drives the phases and the control
 * stream; each data stream has a worker thread with its own io_uring.  For
 * every round the main thread posts a job (the pages whose bit is set), and
 * the workers claim the bitmap a slice at a time, so each sends what it
 * claimed on its own stream.  A worker builds batch k+1 while the kernel
 * sends batch k.  On two cores the threads of both agents fill each other's
 * gaps; one thread moving every stream could not (docs/performance.md).
 *
 * Raw pages go to the socket straight from guest RAM; see send_batch_raw()
 * for what that means while the guest runs.
 */
#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#if HAVE_ZSTD
#define ZSTD_STATIC_LINKING_ONLY   /* ZSTD_estimateCCtxSize_usingCParams() */
#include <zstd.h>
#endif

#include <migrate/aead.h>
#include <migrate/device.h>
#include <migrate/wire-order.h>

#include "util.h"
#include "engine-internal.h"

#define PAGE ((uint64_t)MIG_PAGE_SIZE)
#define POLL_MS 100
#define REPLY_TIMEOUT_MS 120000
/* After COMMIT the guest is paused on both sides and the source can only
 * wait and report: RUNNING kind 1 within the switchover deadline (at least
 * this long), kind 2 within CONFIRM_TIMEOUT_MS after it (the destination
 * sends it 300 ms to 3 s after its vCPUs started). */
#define START_TIMEOUT_MS 10000
#define CONFIRM_TIMEOUT_MS 15000
/* In ROLLBACK the ABORT to the destination is best effort: a destination
 * that does not read its control stream must not keep the source from
 * resuming. */
#define ABORT_SEND_MS 2000
/* Post-copy's push: nothing sent this long (a destination that reads no
 * more, its window closed, without a word) is a break, so that the bounded
 * recovery, and its end, apply (no cancel or deadline does after COMMIT). */
#define PC_STUCK_MS 60000
/* Post-copy: breaks in a row with no page sent between them, after which
 * the link is not made again (the VM's halves are held). */
#define PC_IDLE_BREAKS 5
/* Pages per PAGES frame sent (the wire allows up to MIG_BATCH_PAGES).  At
 * 512 KiB a batch is still in this core's L2 when the kernel copies it,
 * after we read it for its checksums; 1 MiB batches measured up to 40 %
 * slower here (docs/performance.md). */
#define SEND_BATCH_PAGES 128
/* Bitmap words a worker claims at a time: 8 MiB when every page is dirty,
 * so the streams end a round within a few batches of each other.  Whole
 * words, so one stream carries all pages of a word within a round. */
#define CLAIM_WORDS 32
/* What one device may add to a PRECOPY round of its pre-copy data. */
#define DEVICE_PRECOPY_BUDGET (8ULL << 20)
/* Post-copy: the pages after one asked for that go with it, if still to
 * come (QEMU's postcopy pre-fault window is the same idea). */
#define PC_READAHEAD 31

/* One frame being built or sent. */
struct tx_slot {
	struct mig_frame_hdr hdr;
	uint8_t *buf;
	size_t cap;
	struct xport_op op;
	/* a sealed stream's frame: its payload and data, sealed, and their
	 * tags (allocated at the first frame) */
	uint8_t *seal;
	size_t seal_cap;
	uint8_t tag[2][XPORT_AEAD_TAG];
};

struct src;

/* A device whose state travels in DEVICE_DATA frames, all on one stream.
 * The current job sends src->states[index] as `kind` (0: nothing). */
struct dev_tx {
	unsigned index;           /* in vm->devices */
	unsigned stream;          /* 1..n */
	uint64_t offset[2];       /* bytes sent: pre-copy, final */
	uint32_t kind;            /* MIG_FRAME_F_PRECOPY, MIG_FRAME_F_FINAL or 0 */
};

/* A data stream and the thread that sends on it. */
struct tx_worker {
	struct src *s;
	unsigned index;           /* 1..n, as in STREAM_HELLO */
	int fd;
	uint64_t seq;             /* last frame sealed */
	struct xport_aead *aead;  /* a sealed stream's keys (the src's); NULL: clear */
	uint64_t frames;          /* PAGES and DEVICE_DATA frames of the current job */
	struct tx_slot slot[2];   /* one in flight while the other is built */
	unsigned next;
	struct xport_worker xw;   /* its thread and ring */
	uint8_t *gather;          /* zstd's private copy of a batch: allocated at first use */
	bool urgent;              /* sending pages a vCPU waits for: not held to the cap */
	bool paced;               /* post-copy's push: its room under the cap taken first */
	uint64_t gen0;            /* the job generation its thread starts after */
#if HAVE_ZSTD
	ZSTD_CCtx *cctx;
#endif
	struct mig_error err;
};

struct src {
	struct mig_vm *vm;
	struct mig_vm_kvm kvm0;   /* KVM's counts at the start of PRECOPY */
	uint64_t kvm0_ms;         /* and when they were read */
	const struct mig_out_opts *o;
	atomic_bool *cancel;
	mig_event_fn fn;
	void *arg;
	struct mig_event *res;
	struct mig_error err;

	uint8_t *ram;
	uint64_t nr_pages;
	uint64_t *bitmap;
	uint64_t words;
	struct xport_ring ring;   /* the control stream's */
	int ctl_fd;
	/* each stream's keys when sealed ([0] control), NULL in clear */
	struct xport_aead *aead[MIG_MAX_STREAMS + 1];
	bool sealed;
	struct xport_chan_tx ctl; /* its sends */
	struct xport_chan_rx ctl_rx; /* and what comes back */
	struct tx_worker *w;
	unsigned n;
	struct dev_tx *dev;
	unsigned ndev;
	struct mig_buf *states;   /* indexed like vm->devices */
	enum xport_codec codec;   /* the codec in use (auto resolves to one) */
	enum mig_checksum checksum; /* --checksum; AUTO until setup resolves it */
	bool same_host;           /* the streams never leave this host */
	/* enum mig_handover_why: DONE once the destination took guest RAM's
	 * memfd (engine/handover.c), and then no page is sent */
	uint32_t handover;
	bool tracking;            /* the devices' dirty tracking is on */
	bool walked;              /* a device may have left running: roll back on failure */
	bool page_hooks;          /* a device transforms pages (mig_page_ops) */
	bool sessions;            /* a device agrees with its peer first (mig_session_ops) */
	unsigned codec_streams;   /* streams 1..this may compress (the memory budget) */
	uint64_t t0_ms;
	uint64_t precopy_t0;
	uint64_t last_event_ms;
	enum mig_phase phase;
	uint64_t phase_t0;
	uint32_t round;
	/* The job the workers are on.  The main thread writes its fields under
	 * lock while no job runs; `cursor` is claimed atomically, and `stop`
	 * is set atomically by whichever worker fails first. */
	pthread_mutex_t lock;
	pthread_cond_t go, done;
	uint64_t gen;             /* bumped for each job */
	unsigned pending;         /* workers still on it */
	bool quit;
	uint32_t job_round;
	uint32_t job_final;       /* ROUND_END's final: 0, 1 or MIG_ROUND_POSTCOPY */
	bool job_live;
	bool job_pc;              /* post-copy's push: claim pages off pc_todo, asked-for first */
	uint64_t cursor;          /* the next bitmap word to claim */
	bool stop;                /* a worker failed or the user cancelled */
	struct mig_error werr;    /* the first worker failure */
	/* bandwidth cap: bytes allowed since bw_t0 */
	pthread_mutex_t bw_lock;
	uint64_t bw_t0_ms, bw_bytes;
	/* Counted by the workers (atomically, as res->wire_bytes and the page
	 * counts are), reset by the main thread between jobs. */
	uint64_t round_pages;
	uint64_t remaining, dirty_rate, expected_dt;
	bool got_abort;           /* the destination sent ABORT (before COMMIT: it gave up) */
	/* STOP_COPY: past this (mig_now_ms()), the source stops waiting for the
	 * destination and resumes the guest; 0 outside STOP_COPY.  Read by the
	 * workers too. */
	uint64_t deadline_ms;
	uint64_t switchover_ms;   /* the deadline's length */
	uint64_t send_deadline_ms; /* ROLLBACK: give up a control-stream send after this */
	/* auto codec probe */
	uint64_t probe_raw, probe_comp, probe_ns;
	/* Convergence: what the policy carries between rounds, each vCPU's
	 * throttle now and its dirty count at the last round's end (nthr of
	 * them: the VM's throttled devices), the most any has now, since when
	 * one is on; the guest's progress (health) when PRECOPY began, at the
	 * last throttle change and at the last event, and how much of it
	 * came while nothing throttled it. */
	struct conv_state cs;
	struct conv_params conv;  /* the options', and whether the VM can go post-copy */
	unsigned nthr;
	uint32_t *vpct;
	uint64_t *vdirty;
	uint32_t thr_now;
	uint64_t thr_on_ms;
	uint64_t g0, g0_ms, gmark, gmark_ms, gev, gev_ms;
	uint64_t gfree, gfree_ms;
	/* Post-copy (docs/phases.md §2.2): the switch was decided; the pages
	 * still to come (a page's bit is cleared by whoever sends it first);
	 * the pages the destination asked for, read off data stream 1 by the
	 * request reader, under rq_lock; the order-free digest of RAM. */
	bool postcopy;
	bool pc_committed;        /* COMMIT went: no cancel stops the pages (atomic) */
	uint64_t *pc_todo;
	pthread_mutex_t rq_lock;
	pthread_cond_t rq_cond;   /* a request came */
	uint64_t rq[4 * MIG_PAGE_REQUEST_MAX];
	unsigned rq_n;
	unsigned pushers;         /* workers still claiming pages in the push (atomic) */
	uint64_t pc_asked;        /* pages asked for (atomic) */
	struct xport_worker rq_xw;
	atomic_bool rq_stop;
	struct mig_error rq_err;
	uint64_t pc_sum[2];
	uint64_t halted_cpu_ms;   /* CPU time of worker threads ended for a recovery */
};

static void count(uint64_t *c, uint64_t n)
{
	__atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}

static uint64_t counted(const uint64_t *c)
{
	return __atomic_load_n(c, __ATOMIC_RELAXED);
}

/* What KVM counted since PRECOPY began: the cost the guest sees of dirty
 * logging (its write-protect faults, the TLB flushes of re-protection), and
 * how idle the guest was (the share of its vCPUs' time spent halted). */
static void kvm_since_precopy(struct src *s, struct mig_event *ev)
{
	struct mig_vm_kvm k1 = { 0 }, *k0 = &s->kvm0;
	uint64_t span_ns, halted_ns;

	if (!s->vm->ops->kvm || !k0->valid)
		return;
	s->vm->ops->kvm(s->vm, &k1);
	if (!k1.valid)
		return;
	ev->kvm_valid = 1;
	ev->kvm_exits = k1.exits - k0->exits;
	ev->kvm_page_faults = k1.page_faults - k0->page_faults;
	ev->kvm_halt_exits = k1.halt_exits - k0->halt_exits;
	ev->kvm_remote_tlb_flushes = k1.remote_tlb_flushes - k0->remote_tlb_flushes;
	ev->kvm_halt_successful_polls = k1.halt_successful_polls - k0->halt_successful_polls;
	ev->kvm_halt_attempted_polls = k1.halt_attempted_polls - k0->halt_attempted_polls;
	ev->kvm_halt_poll_success_ns = k1.halt_poll_success_ns - k0->halt_poll_success_ns;
	ev->kvm_halt_poll_fail_ns = k1.halt_poll_fail_ns - k0->halt_poll_fail_ns;
	ev->kvm_halt_wait_ns = k1.halt_wait_ns - k0->halt_wait_ns;
	ev->kvm_vcpus = k1.vcpus;
	ev->kvm_halted_permille = MIG_KVM_HALTED_UNKNOWN;
	span_ns = (mig_now_ms() - s->kvm0_ms) * 1000000ULL * k1.vcpus;
	if (k1.halt_ns_valid && span_ns) {
		halted_ns = ev->kvm_halt_wait_ns + ev->kvm_halt_poll_success_ns +
			    ev->kvm_halt_poll_fail_ns;
		/* the counters and the clock are read apart: never above all of it */
		ev->kvm_halted_permille = halted_ns >= span_ns ? 1000 :
			(uint32_t)(halted_ns / 1000 * 1000 / (span_ns / 1000));  /* in µs: no overflow */
	}
}

static void emit_progress(struct src *s, bool force);

/* The fault hook (NULL in production): <0 injects that failure here. */
static int fault_at(struct src *s, struct mig_fault_point p, struct mig_error *err)
{
	return s->o->fault ? s->o->fault(s->o->fault_arg, &p, err) : 0;
}

static int set_phase(struct src *s, enum mig_phase p)
{
	uint64_t now = mig_now_ms();
	int r;

	if (s->phase != p && !mig_phase_arc_allowed(s->phase, p))
		/* a bug: record it, keep the phase the table allows */
		return mig_error_set(&s->err, -EINVAL, "internal: no phase transition %s => %s",
				     mig_phase_to_string(s->phase), mig_phase_to_string(p));
	r = fault_at(s, (struct mig_fault_point){ .kind = MIG_FAULT_PHASE, .from = (int)s->phase,
						   .to = (int)p }, &s->err);
	if (r < 0)
		return r;
	if (s->phase != p) {
		s->res->phase_duration_ms[s->phase] = now - s->phase_t0;
		s->res->phase_start_ms[p] = now - s->t0_ms;
		s->phase = p;
		s->phase_t0 = now;
		emit_progress(s, true);
	}
	return 0;
}

static uint64_t guest_progress(struct src *s)
{
	struct mig_vm_health h = { 0 };

	s->vm->ops->health(s->vm, &h);
	return h.progress;
}

/* The guest's progress per second since the last event. */
static uint64_t guest_rate_lately(struct src *s, uint64_t now)
{
	uint64_t g = guest_progress(s), rate = 0;

	if (s->gev_ms && now > s->gev_ms && g >= s->gev)
		rate = (g - s->gev) * 1000 / (now - s->gev_ms);
	s->gev = g;
	s->gev_ms = now;
	return rate;
}

/* A throttle change (to `most`, the most any vCPU gets): the guest's
 * progress since the last change counts as free if nothing throttled it
 * meanwhile, and the time as throttled if something did. */
static void guest_mark(struct src *s, uint32_t most)
{
	uint64_t g = guest_progress(s), now = mig_now_ms();

	if (!s->thr_now && s->gmark_ms && g >= s->gmark) {
		s->gfree += g - s->gmark;
		s->gfree_ms += now - s->gmark_ms;
	}
	if (s->thr_now)
		s->res->throttle_ms += now - s->gmark_ms;
	s->thr_now = most;
	if (most > s->res->throttle_pct)
		s->res->throttle_pct = most;
	s->gmark = g;
	s->gmark_ms = now;
}

/* The throttle the policy chose for the next round: VM-wide where the
 * dirty log cannot tell vCPUs apart, else shared out per vCPU by what
 * each dirtied in the round just ended (conv_vcpu_limits()). */
static int throttle_apply(struct src *s, uint32_t pct)
{
	uint64_t now_dirty[64], delta[64];
	uint32_t want[64], most = 0;
	unsigned n = s->nthr < 64 ? s->nthr : 64, k;
	bool change = false;
	int r;

	if (!n || !s->vpct)
		return 0;
	k = mig_vm_dirty_by_vcpu(s->vm, now_dirty, n);
	for (unsigned i = 0; i < k; i++) {
		delta[i] = now_dirty[i] >= s->vdirty[i] ? now_dirty[i] - s->vdirty[i] : 0;
		s->vdirty[i] = now_dirty[i];
	}
	if (k == n)
		conv_vcpu_limits(pct, s->o->conv.max_throttle_pct, delta, s->vpct, n, want);
	else
		for (unsigned i = 0; i < n; i++)
			want[i] = pct;
	for (unsigned i = 0; i < n; i++) {
		change |= want[i] != s->vpct[i];
		most = want[i] > most ? want[i] : most;
	}
	if (!change)
		return 0;
	guest_mark(s, most);
	r = mig_vm_throttle(s->vm, want, n, &s->err);
	if (r < 0)
		return mig_error_prefix(&s->err, "throttling the vCPUs");
	memcpy(s->vpct, want, n * sizeof(*want));
	return 0;
}

/* Every vCPU free again: PRECOPY is over, whichever way. */
static void throttle_release(struct src *s)
{
	static const uint32_t zero;

	if (!s->vpct)
		return;
	guest_mark(s, 0);
	mig_vm_throttle(s->vm, &zero, 1, NULL);
	memset(s->vpct, 0, s->nthr * sizeof(*s->vpct));
}

static void emit_progress(struct src *s, bool force)
{
	struct mig_event ev = { 0 };
	uint64_t now = mig_now_ms(), el = now - s->t0_ms;

	if (!s->fn || (!force && now - s->last_event_ms < 200))
		return;
	s->last_event_ms = now;
	ev.kind = MIG_EVENT_PROGRESS;
	ev.phase = s->phase;
	ev.round = s->round;
	ev.streams = s->n;
	ev.codec = s->codec;
	ev.elapsed_ms = el;
	ev.remaining_bytes = s->remaining;
	ev.dirty_rate_bps = s->dirty_rate;
	ev.wire_bytes = counted(&s->res->wire_bytes);
	ev.throughput_bps = el ? ev.wire_bytes * 1000 / el : 0;
	ev.expected_downtime_ms = s->expected_dt;
	ev.transferred_bytes = counted(&s->res->transferred_bytes);
	ev.converge = s->o->conv.mode;
	ev.throttle_pct = s->thr_now;
	if (s->phase == MIG_PHASE_PRECOPY) {
		kvm_since_precopy(s, &ev);
		ev.guest_rate = guest_rate_lately(s, now);
	}
	s->fn(&ev, s->arg);
}

/* A cancel counts until COMMIT of a post-copy: from there the pages must
 * all go, whatever is asked (each host holds a half of the VM). */
static bool cancelled(struct src *s)
{
	return s->cancel && atomic_load(s->cancel) &&
	       !__atomic_load_n(&s->pc_committed, __ATOMIC_RELAXED);
}

/* The guest has been paused longer than the switchover deadline allows. */
static bool past_deadline(struct src *s)
{
	uint64_t d = __atomic_load_n(&s->deadline_ms, __ATOMIC_RELAXED);

	return d && mig_now_ms() > d;
}

static int deadline_error(struct src *s, struct mig_error *err)
{
	return mig_error_set(err, -ETIMEDOUT, "the destination did not take the VM within the "
			     "switchover deadline of %llu ms (--switchover-timeout); the guest was "
			     "paused that long", (unsigned long long)s->switchover_ms);
}

static bool stopping(struct src *s);

/* Under bw_lock: the bytes the cap allows in its window so far (a window
 * begins anew after a second). */
static uint64_t bw_allowed(struct src *s, uint64_t cap)
{
	uint64_t now = mig_now_ms();

	if (!s->bw_t0_ms || now - s->bw_t0_ms > 1000) {
		s->bw_t0_ms = now;
		s->bw_bytes = 0;
	}
	return (now - s->bw_t0_ms) * cap / 1000;
}

/* Bandwidth cap, shared by the workers: sleep until `bytes` more fit, in
 * slices, so that cancel is not kept waiting.  False when stopped. */
static bool throttle(struct src *s, uint64_t bytes)
{
	uint64_t cap = s->o->conv.max_bandwidth_bps, allowed, ms = 0;

	if (!cap)
		return true;
	pthread_mutex_lock(&s->bw_lock);
	allowed = bw_allowed(s, cap);
	s->bw_bytes += bytes;
	if (s->bw_bytes > allowed)
		ms = (s->bw_bytes - allowed) * 1000 / cap;
	pthread_mutex_unlock(&s->bw_lock);
	while (ms && !stopping(s)) {
		uint64_t slice = ms < POLL_MS ? ms : POLL_MS;
		struct timespec ts = { 0, (long)slice * 1000000L };

		nanosleep(&ts, NULL);
		ms -= slice;
	}
	return !stopping(s);
}

/* Post-copy: room under the cap for `bytes`, taken if there is some now
 * (the sender is not ahead of the cap); or bytes counted against it
 * whatever (`force`: pages a vCPU waits for). */
static bool bw_take(struct src *s, uint64_t bytes, bool force)
{
	uint64_t cap = s->o->conv.max_bandwidth_bps;
	bool ok;

	if (!cap)
		return true;
	pthread_mutex_lock(&s->bw_lock);
	ok = bw_allowed(s, cap) >= s->bw_bytes || force;
	if (ok)
		s->bw_bytes += bytes;
	pthread_mutex_unlock(&s->bw_lock);
	return ok;
}

/* Fill a slot's op for its sealed header followed by iov[0..n). */
static void slot_op(struct tx_slot *t, int fd, const struct iovec *iov, int n)
{
	/* no memset: the op has room for 260 iovecs, and the ring engine sets
	 * the fields it keeps itself */
	t->op.fd = fd;
	t->op.is_send = true;
	t->op.iov[0] = (struct iovec){ &t->hdr, sizeof(t->hdr) };
	t->op.total = sizeof(t->hdr);
	for (int i = 0; i < n; i++) {
		t->op.iov[1 + i] = iov[i];
		t->op.total += iov[i].iov_len;
	}
	t->op.iovcnt = 1 + n;
	t->op.user = t;
}

/* Wait until nothing is in flight on the control stream. */
static int ctl_wait(struct src *s)
{
	while (s->ring.inflight) {
		struct xport_op *op = NULL;
		int r = xport_ring_wait(&s->ring, POLL_MS, &op, &s->err);

		if (r == -ETIME) {
			/* once COMMIT is on its way, only the destination's
			 * answer settles who owns the VM */
			if (s->phase < MIG_PHASE_COMMIT && cancelled(s))
				return mig_error_set(&s->err, -ECANCELED, "cancelled");
			if (s->phase < MIG_PHASE_COMMIT && past_deadline(s))
				return deadline_error(s, &s->err);
			if (s->send_deadline_ms && mig_now_ms() > s->send_deadline_ms) {
				/* ends the send: the ring gives it back with an error */
				shutdown(s->ctl_fd, SHUT_RDWR);
				s->send_deadline_ms = 0;
			}
			continue;
		}
		if (r < 0)
			return r;
		xport_chan_sent(&s->ctl, op);
		if (op->res < 0)
			return mig_error_set(&s->err, op->res, "sending to the destination: %s",
					     strerror(-op->res));
	}
	return 0;
}

/* Send a small frame on the control stream and wait until it left. */
static int ctl_send(struct src *s, uint16_t type, const void *p, size_t len)
{
	int r;

	r = fault_at(s, (struct mig_fault_point){ .kind = MIG_FAULT_FRAME_SEND, .frame_type = type,
						   .stream = 0, .seq = s->ctl.seq + 1 }, &s->err);
	if (r < 0)
		return r;
	r = xport_chan_send(&s->ctl, &s->ring, type, p, len, &s->err);
	if (r < 0)
		return r;
	count(&s->res->wire_bytes, s->ctl.op.total);
	return ctl_wait(s);
}

/* A receive that timed out still points at ctl_recv's frame and the
 * caller's buffers: end it (nothing is read on the control stream after a
 * timeout; ABORT can still be sent) and wait until the ring gives it back. */
static void ctl_recv_abandon(struct src *s, struct xport_op *op)
{
	struct xport_op *done = NULL;

	shutdown(s->ctl_fd, SHUT_RD);
	while (done != op && xport_ring_wait(&s->ring, 1000, &done, NULL) >= 0)
		;
}

/* Receive one frame on the control stream (only when nothing else is in flight). */
static int ctl_recv(struct src *s, struct mig_frame_hdr *h, struct mig_buf *pl, int timeout_ms)
{
	uint64_t end = mig_now_ms() + (uint64_t)timeout_ms;
	struct xport_chan_rx *c = &s->ctl_rx;
	struct xport_op *done;
	int r;

	r = xport_chan_rx_hdr(c, &s->err);
	while (r == 0) {
		r = xport_ring_wait(&s->ring, POLL_MS, &done, &s->err);
		if (r == -ETIME) {
			/* Before COMMIT a cancel wins over any wait on the
			 * destination (READY, LOADED, SUMS); after it, the
			 * destination may run the VM and only its answer
			 * settles who owns it. */
			if (s->phase < MIG_PHASE_COMMIT && cancelled(s)) {
				ctl_recv_abandon(s, &c->op);
				return mig_error_set(&s->err, -ECANCELED, "cancelled");
			}
			if (s->phase < MIG_PHASE_COMMIT && past_deadline(s)) {
				ctl_recv_abandon(s, &c->op);
				return deadline_error(s, &s->err);
			}
			if (mig_now_ms() > end) {
				ctl_recv_abandon(s, &c->op);
				return mig_error_set(&s->err, -ETIMEDOUT, "the destination did not "
						     "answer in %d ms", timeout_ms);
			}
			r = 0;
			continue;
		}
		if (r < 0)
			return r;
		if (done != &c->op) {
			/* a send that ctl_wait() no longer waits for */
			xport_chan_sent(&s->ctl, done);
			continue;
		}
		if (c->op.res < 0)
			return mig_error_set(&s->err, c->op.res, "the destination closed the "
					     "migration stream: %s", strerror(-c->op.res));
		r = xport_chan_rx_step(c, &s->err);
	}
	if (r < 0)
		return r;
	*h = c->hdr;
	pl->len = 0;
	if (h->length && mig_buf_append(pl, c->buf.data, h->length) < 0)
		return mig_error_set(&s->err, -ENOMEM, "out of memory");
	r = fault_at(s, (struct mig_fault_point){ .kind = MIG_FAULT_FRAME_RECV, .frame_type = h->type,
						   .stream = 0, .seq = h->seq }, &s->err);
	if (r < 0)
		return r;
	if (h->type == MIG_FRAME_ABORT) {
		struct mig_error_msg m;

		s->got_abort = true;
		return mig_error_set(&s->err, mig_error_msg_parse(pl->data, h->length, &m, -EPROTO),
				     "the destination aborted: %s", m.msg);
	}
	return 0;
}

static int expect(struct src *s, struct mig_frame_hdr *h, uint16_t type, size_t len)
{
	if (h->type != type || h->length != len)
		return mig_error_set(&s->err, -EPROTO, "expected %s (%zu bytes) from the destination, "
				     "got %s (%u bytes)", mig_frame_type_to_string(type), len,
				     mig_frame_type_to_string(h->type) ?: "?", h->length);
	return 0;
}

/* RUNNING of the kind expected, its text terminated. */
static int expect_running(struct src *s, struct mig_frame_hdr *h, const struct mig_buf *pl,
			  uint32_t kind, struct mig_running *run)
{
	int r = expect(s, h, MIG_FRAME_RUNNING, sizeof(*run));

	if (r < 0)
		return r;
	memcpy(run, pl->data, sizeof(*run));
	mig_wire_le(&mig_wl_running, run, 1);
	run->msg[sizeof(run->msg) - 1] = '\0';
	if (run->kind != kind)
		return mig_error_set(&s->err, -EPROTO, "expected RUNNING kind %u from the "
				     "destination, got kind %u", kind, run->kind);
	return 0;
}

static bool stopping(struct src *s)
{
	return __atomic_load_n(&s->stop, __ATOMIC_RELAXED) || cancelled(s) || past_deadline(s);
}

static int stop_error(struct tx_worker *w)
{
	if (cancelled(w->s))
		return mig_error_set(&w->err, -ECANCELED, "cancelled");
	if (past_deadline(w->s))
		return deadline_error(w->s, &w->err);
	return mig_error_set(&w->err, -ECANCELED, "another stream failed");
}

/* Wait until the worker's frame in flight (if any) has left. */
static int tx_wait(struct tx_worker *w)
{
	while (w->xw.ring.inflight) {
		struct xport_op *op = NULL;
		int r = xport_ring_wait(&w->xw.ring, POLL_MS, &op, &w->err);

		if (r == -ETIME) {
			if (stopping(w->s))
				return stop_error(w);
			continue;
		}
		if (r < 0)
			return r;
		if (op->res < 0)
			return mig_error_set(&w->err, op->res, "sending to the destination on "
					     "stream %u: %s", w->index, strerror(-op->res));
	}
	return 0;
}

/*
 * A sealed stream's frame (protocol.md §1.8), whose header t->hdr is made:
 * the payload (the first iovecs, `length` bytes) copied into the slot's
 * own buffer and sealed there, the data after it (PAGES) sealed from where
 * it lies (guest RAM, or the slot) into the buffer after the payload;
 * what goes out into out[0..*nout).
 */
static int seal_frame(struct tx_worker *w, struct tx_slot *t, const struct iovec *iov, int n,
		      struct iovec *out, int *nout)
{
	struct iovec dst[MIG_BATCH_PAGES + 1], pl;
	size_t plen = le32toh(t->hdr.length), dlen = 0, off = 0, at;
	int k = 0;

	while (k < n && off < plen)
		off += iov[k++].iov_len;
	if (off != plen || n - k > (int)ARRAY_SIZE(dst))
		return mig_error_set(&w->err, -EINVAL, "internal: a frame's payload does not end "
				     "at an iovec");
	for (int i = k; i < n; i++)
		dlen += iov[i].iov_len;
	if (t->seal_cap < plen + dlen) {
		uint8_t *b = realloc(t->seal, plen + dlen);

		if (!b)
			return mig_error_set(&w->err, -ENOMEM, "out of memory for stream %u's "
					     "sealed frames", w->index);
		t->seal = b;
		t->seal_cap = plen + dlen;
	}
	for (int i = 0, o = 0; i < k; o += (int)iov[i].iov_len, i++)
		memcpy(t->seal + o, iov[i].iov_base, iov[i].iov_len);
	pl = (struct iovec){ t->seal, plen };
	if (xport_aead_seal(w->aead, &t->hdr, dlen, &pl, plen ? 1 : 0, t->tag[0], &w->err) < 0)
		return w->err.code;
	*nout = 0;
	if (plen)
		out[(*nout)++] = pl;
	out[(*nout)++] = (struct iovec){ t->tag[0], XPORT_AEAD_TAG };
	if (!dlen)
		return 0;
	at = plen;
	for (int i = k; i < n; i++) {
		dst[i - k] = (struct iovec){ t->seal + at, iov[i].iov_len };
		at += iov[i].iov_len;
	}
	if (xport_aead_seal_data(w->aead, le64toh(t->hdr.seq), iov + k, dst, n - k, t->tag[1],
				 &w->err) < 0)
		return w->err.code;
	out[(*nout)++] = (struct iovec){ t->seal + plen, dlen };
	out[(*nout)++] = (struct iovec){ t->tag[1], XPORT_AEAD_TAG };
	return 0;
}

/* Queue a frame whose header is sealed: after the frame before it left,
 * since two sends on one socket must not be in flight together. */
static int tx_submit(struct tx_worker *w, struct tx_slot *t, const struct iovec *iov, int n)
{
	struct iovec sealed[4];
	int r;

	if (w->aead) {
		/* the slot's buffers: the frame before it in this slot has left
		 * (next_slot alternates, tx_wait below waits for the other) */
		r = seal_frame(w, t, iov, n, sealed, &n);
		if (r < 0)
			return r;
		iov = sealed;
	}
	slot_op(t, w->fd, iov, n);
	r = tx_wait(w);
	if (r < 0)
		return r;
	r = fault_at(w->s, (struct mig_fault_point){ .kind = MIG_FAULT_FRAME_SEND,
						      .frame_type = le16toh(t->hdr.type),
						      .stream = w->index, .seq = w->seq }, &w->err);
	if (r < 0)
		return r;
	if (w->urgent)
		bw_take(w->s, t->op.total, true);
	else if (!w->paced && !throttle(w->s, t->op.total))
		return stop_error(w);
	count(&w->s->res->wire_bytes, t->op.total);
	return xport_ring_submit(&w->xw.ring, &t->op, &w->err);
}

static struct tx_slot *next_slot(struct tx_worker *w)
{
	struct tx_slot *t = &w->slot[w->next];

	w->next ^= 1;
	return t;
}

static struct mig_page_ent *page_ents(struct tx_slot *t);

/* Seal a PAGES frame whose meta (header, entries, tags) is in t->buf, for
 * sequence number seq, with data[0..ndata) after it, and queue it. */
static int submit_pages(struct tx_worker *w, struct tx_slot *t, uint64_t seq, unsigned count_,
			unsigned nz, uint32_t flags, const struct iovec *data, int ndata)
{
	struct mig_pages_hdr *ph = (struct mig_pages_hdr *)t->buf;
	struct mig_event *res = w->s->res;
	struct iovec iov[MIG_BATCH_PAGES + 1];
	size_t len = 0;

	for (int i = 0; i < ndata; i++)
		len += data[i].iov_len;
	*ph = (struct mig_pages_hdr){
		.count = count_, .zero_count = count_ - nz, .round = w->s->job_round,
		.data_len = (uint32_t)len,
	};
	mig_wire_le(&mig_wl_pages_hdr, ph, 1);
	/* tags (a page hook's) lengthen the meta; without hooks there are none */
	iov[0] = (struct iovec){ t->buf, w->s->page_hooks ? mig_pages_meta_len(page_ents(t), count_) :
					 sizeof(*ph) + (size_t)count_ * sizeof(struct mig_page_ent) };
	memcpy(iov + 1, data, (size_t)ndata * sizeof(*data));
	w->seq = seq;
	mig_frame_seal(&t->hdr, MIG_FRAME_PAGES, flags, seq, iov, 1);
	count(&res->zero_pages, count_ - nz);
	count(&res->normal_pages, nz);
	count(&res->transferred_bytes, (uint64_t)nz * PAGE);
	count(&w->s->round_pages, count_);
	w->frames++;
	return tx_submit(w, t, iov, 1 + ndata);
}

static struct mig_page_ent *page_ents(struct tx_slot *t)
{
	return (struct mig_page_ent *)(t->buf + sizeof(struct mig_pages_hdr));
}

/* Raw PAGES: the data goes to the socket straight from guest RAM, adjacent
 * pages as one iovec.  While the vCPUs run, the guest may write a page
 * between our checksum and the kernel's copy; the frame says so (LIVE) and
 * the destination takes a mismatch as "this page comes again", which the
 * dirty log guarantees.  Once the vCPUs are stopped nothing can race. */
static int send_batch_raw(struct tx_worker *w, struct tx_slot *t, const uint64_t *pfns,
			  unsigned count_)
{
	struct src *s = w->s;
	struct iovec runs[MIG_BATCH_PAGES];
	uint64_t seq = w->seq + 1;
	int nruns = 0;
	unsigned nz = (unsigned)mig_pages_encode(s->ram, pfns, count_, seq,
						 s->checksum == MIG_CHECKSUM_PAGES, page_ents(t), runs,
						 &nruns, NULL, NULL, NULL);

	return submit_pages(w, t, seq, count_, nz, s->job_live ? MIG_FRAME_F_LIVE : 0, runs, nruns);
}

/* A page's wire form, by the VM's page hooks (on the worker's own copy). */
static int page_hook(void *ctx, uint64_t pfn, void *page, void *tag)
{
	struct tx_worker *w = ctx;

	return mig_vm_page_encode(w->s->vm, pfn, page, tag, &w->err);
}

/* A slot holds a frame's metadata; one that carries page data (compressed,
 * or turned into its wire form by a page hook) grows to hold a batch's
 * data too, the first time it does.  A slot being built is never in
 * flight (tx_submit() waits for the other one first). */
#define SLOT_META_CAP MIG_PAGES_META_MAX
#define SLOT_DATA_CAP (MIG_PAGES_META_MAX + MIG_BATCH_PAGES * PAGE + 65536)

/* A stream's buffers for page data, at its first batch that needs them:
 * a migration that never compresses never holds them. */
static int worker_data_alloc(struct tx_worker *w, struct tx_slot *t, bool zstd)
{
	uint8_t *b;

	if (t->cap < SLOT_DATA_CAP) {
		if (!(b = realloc(t->buf, SLOT_DATA_CAP)))
			return -ENOMEM;
		t->buf = b;
		t->cap = SLOT_DATA_CAP;
	}
	if (!zstd)
		return 0;
	if (!w->gather && !(w->gather = malloc(MIG_BATCH_PAGES * PAGE)))
		return -ENOMEM;
#if HAVE_ZSTD
	if (!w->cctx && !(w->cctx = ZSTD_createCCtx()))
		return -ENOMEM;
#endif
	return 0;
}

/* What a compressing stream holds beyond a raw one: the copy of a batch,
 * both frames' data filled (compressed, or the copy when it did not
 * shrink), and zstd's context for a batch at this level. */
static uint64_t codec_stream_bytes(int level)
{
	uint64_t b = MIG_BATCH_PAGES * PAGE + 2 * (SLOT_DATA_CAP - SLOT_META_CAP);

#if HAVE_ZSTD
	b += ZSTD_estimateCCtxSize_usingCParams(ZSTD_getCParams(level, MIG_BATCH_PAGES * PAGE,
								0));
#else
	(void)level;
#endif
	return b;
}

/* Build and submit one PAGES frame for pfns[0..count). */
static int send_batch(struct tx_worker *w, const uint64_t *pfns, unsigned count_)
{
	struct src *s = w->s;
	struct tx_slot *t = next_slot(w);
	/* the data goes after the meta, and its tags may take their most */
	size_t meta = sizeof(struct mig_pages_hdr) +
		      count_ * (sizeof(struct mig_page_ent) + (s->page_hooks ? MIG_PAGE_TAG_SIZE : 0));
	bool zstd = s->codec == XPORT_CODEC_ZSTD;
	unsigned nz;
	uint32_t flags = 0;
	struct iovec data;
	uint64_t seq;
	int r;

	/* The memory budget lets only some streams compress; the others send
	 * their pages raw (the codec is per frame). */
	zstd = zstd && w->index <= s->codec_streams;
	if (!zstd && !s->page_hooks)
		return send_batch_raw(w, t, pfns, count_);
	if (worker_data_alloc(w, t, zstd) < 0)
		return mig_error_set(&w->err, -ENOMEM, "out of memory for stream %u's "
				     "page data buffers", w->index);
	/* zstd reads a private copy: compressing bytes that change under it
	 * would give data that decodes to something no one sent.  A page hook
	 * turns a copy into the wire form; without zstd it goes from the
	 * slot. */
	seq = w->seq + 1;
	r = mig_pages_encode(s->ram, pfns, count_, seq, s->checksum == MIG_CHECKSUM_PAGES,
			     page_ents(t), NULL, NULL, zstd ? w->gather : t->buf + meta,
			     s->page_hooks ? page_hook : NULL, w);
	if (r < 0)
		return r;
	nz = (unsigned)r;
	data = (struct iovec){ t->buf + meta, (size_t)nz * PAGE };
#if HAVE_ZSTD
	if (nz && zstd) {
		struct timespec a, b;
		size_t c;

		clock_gettime(CLOCK_MONOTONIC, &a);
		c = ZSTD_compressCCtx(w->cctx, t->buf + meta, t->cap - meta, w->gather, data.iov_len,
				      s->o->compress.level ? s->o->compress.level : 1);
		clock_gettime(CLOCK_MONOTONIC, &b);
		count(&s->probe_ns, (uint64_t)(b.tv_sec - a.tv_sec) * 1000000000ULL +
			  (uint64_t)(b.tv_nsec - a.tv_nsec));
		count(&s->probe_raw, data.iov_len);
		if (!ZSTD_isError(c) && c < data.iov_len) {
			flags = MIG_FRAME_F_ZSTD;
			data.iov_len = c;
		} else {
			/* Incompressible: send raw, it costs the receiver nothing.
			 * (The next batch reuses the gather buffer.) */
			memcpy(t->buf + meta, w->gather, data.iov_len);
		}
		count(&s->probe_comp, data.iov_len);
	}
#endif
	return submit_pages(w, t, seq, count_, nz, flags, &data, data.iov_len ? 1 : 0);
}

/* The state of the devices this stream carries, as this job sends it, in
 * chunks after the job's pages.  A device's final state ends with END, even
 * when it is empty. */
static int send_device_data(struct tx_worker *w)
{
	struct src *s = w->s;

	for (unsigned k = 0; k < s->ndev; k++) {
		const struct dev_tx *x = &s->dev[k];
		const struct mig_device *d = s->vm->devices[x->index];
		const struct mig_buf *b = &s->states[x->index];
		bool final = x->kind == MIG_FRAME_F_FINAL;
		size_t off = 0;

		if (x->stream != w->index || !x->kind)
			continue;
		do {
			struct tx_slot *t = next_slot(w);
			struct mig_device_data *dd = (struct mig_device_data *)t->buf;
			size_t len = b->len - off < MIG_DEVICE_CHUNK_MAX ? b->len - off :
									    MIG_DEVICE_CHUNK_MAX;
			struct iovec iov[2] = { { dd, sizeof(*dd) }, { b->data + off, len } };
			uint32_t flags = x->kind | (final && off + len == b->len ? MIG_FRAME_F_END : 0);
			int r;

			*dd = (struct mig_device_data){
				.cls = d->cls->id, .instance = d->id, .offset = x->offset[final] + off,
				.round = s->job_round, .len = (uint32_t)len,
			};
			mig_wire_le(&mig_wl_device_data, dd, 1);
			mig_frame_seal(&t->hdr, MIG_FRAME_DEVICE_DATA, flags, ++w->seq, iov, 2);
			w->frames++;
			r = tx_submit(w, t, iov, 2);
			if (r < 0)
				return r;
			if (stopping(s))
				return stop_error(w);
			off += len;
		} while (off < b->len);
	}
	return 0;
}

/* Post-copy: the pages the destination asked for, off the queue, before
 * anything else (any stream serves them: whichever is free first).  A page
 * asked for goes even if the push took it already, as that copy may still
 * be waiting for the cap; the destination places one and drops the other. */
static int serve_requests(struct tx_worker *w)
{
	struct src *s = w->s;
	uint64_t pfns[SEND_BATCH_PAGES];
	int r;

	for (;;) {
		unsigned n = 0, asked = 0;

		/* each page asked for, and those after it still to come: a guest
		 * that faults on a page mostly goes on to the next ones */
		pthread_mutex_lock(&s->rq_lock);
		while (asked < s->rq_n && n + 1 + PC_READAHEAD <= SEND_BATCH_PAGES) {
			uint64_t pfn = s->rq[asked++];

			__atomic_fetch_and(&s->pc_todo[pfn / 64], ~(1ULL << (pfn % 64)),
					   __ATOMIC_RELAXED);
			pfns[n++] = pfn;
			for (unsigned k = 1; k <= PC_READAHEAD && pfn + k < s->nr_pages; k++) {
				uint64_t p = pfn + k, bit = 1ULL << (p % 64);

				if (!(__atomic_fetch_and(&s->pc_todo[p / 64], ~bit,
							 __ATOMIC_RELAXED) & bit))
					break;
				pfns[n++] = p;
			}
		}
		memmove(s->rq, s->rq + asked, (s->rq_n - asked) * sizeof(s->rq[0]));
		s->rq_n -= asked;
		pthread_mutex_unlock(&s->rq_lock);
		if (!n)
			return 0;
		w->urgent = true;
		count(&s->res->postcopy_served, asked);
		r = send_batch(w, pfns, n);
		w->urgent = false;
		if (r < 0)
			return r;
	}
}

/* Post-copy's push keeps to the cap without sleeping through a request:
 * it waits for room in 1 ms slices, serving what is asked meanwhile, then
 * sends its batch of n pages. */
static int pc_push_batch(struct tx_worker *w, const uint64_t *pfns, unsigned n)
{
	struct src *s = w->s;
	int r;

	for (;;) {
		r = s->n > 1 ? 0 : serve_requests(w);
		if (r < 0)
			return r;
		if (bw_take(s, (uint64_t)n * PAGE, false))
			break;
		if (stopping(s))
			return stop_error(w);
		usleep(1000);
	}
	w->paced = true;
	r = send_batch(w, pfns, n);
	w->paced = false;
	return r;
}

/* Whether this job still sends pfn: always, but in post-copy's push only
 * if no one took it (a request) since the claim. */
static bool job_takes(struct src *s, uint64_t pfn)
{
	uint64_t bit = 1ULL << (pfn % 64);

	return !s->job_pc ||
	       (__atomic_fetch_and(&s->pc_todo[pfn / 64], ~bit, __ATOMIC_RELAXED) & bit);
}

static int job_end(struct tx_worker *w);

/* Post-copy with more than one stream: stream 1 carries only the pages
 * asked for (and those after them), so that they never queue behind the
 * push in a socket, until every other stream has claimed its last page. */
static int pc_urgent_job(struct tx_worker *w)
{
	struct src *s = w->s;
	int r;

	mig_thread_prompt();
	for (;;) {
		bool last = !__atomic_load_n(&s->pushers, __ATOMIC_ACQUIRE);

		r = serve_requests(w);
		if (r < 0)
			return r;
		if (last)
			break;
		if (stopping(s))
			return stop_error(w);
		pthread_mutex_lock(&s->rq_lock);
		if (!s->rq_n) {
			struct timespec ts = mig_timespec_after(CLOCK_REALTIME, 2000000ULL);

			pthread_cond_timedwait(&s->rq_cond, &s->rq_lock, &ts);
		}
		pthread_mutex_unlock(&s->rq_lock);
	}
	return job_end(w);
}

/* One job: claim slices of the bitmap until none is left, send their pages,
 * then tell the destination with ROUND_END how many frames this stream
 * carried in the round.  Post-copy's push leaves the pages asked for to
 * stream 1 (to whichever stream is free first, with one stream). */
static int tx_job(struct tx_worker *w)
{
	struct src *s = w->s;
	uint64_t pfns[SEND_BATCH_PAGES];
	unsigned n = 0;
	int r;

	if (s->job_pc && s->n > 1 && w->index == 1)
		return pc_urgent_job(w);

	for (;;) {
		uint64_t w0 = __atomic_fetch_add(&s->cursor, CLAIM_WORDS, __ATOMIC_RELAXED);
		uint64_t end = w0 + CLAIM_WORDS < s->words ? w0 + CLAIM_WORDS : s->words;

		if (w0 >= s->words)
			break;
		for (uint64_t i = w0; i < end; i++) {
			uint64_t bits = s->job_pc ? __atomic_load_n(&s->pc_todo[i], __ATOMIC_RELAXED) :
						    s->bitmap[i];

			while (bits) {
				uint64_t pfn = i * 64 + (uint64_t)__builtin_ctzll(bits);

				bits &= bits - 1;
				if (pfn >= s->nr_pages)
					break;
				if (!job_takes(s, pfn))
					continue;
				pfns[n++] = pfn;
				if (n < SEND_BATCH_PAGES)
					continue;
				r = s->job_pc ? pc_push_batch(w, pfns, n) : send_batch(w, pfns, n);
				if (r < 0)
					return r;
				n = 0;
				if (stopping(s))
					return stop_error(w);
			}
		}
	}
	if (s->job_pc && s->n == 1 && (r = serve_requests(w)) < 0)
		return r;
	if (n) {
		r = s->job_pc ? pc_push_batch(w, pfns, n) : send_batch(w, pfns, n);
		if (r < 0)
			return r;
	}
	if (s->job_pc)
		__atomic_fetch_sub(&s->pushers, 1, __ATOMIC_RELEASE);
	return job_end(w);
}

/* The end of a job on this stream: the devices' state it carries, then
 * ROUND_END with its frame count. */
static int job_end(struct tx_worker *w)
{
	struct src *s = w->s;
	struct mig_round_end re;
	struct iovec piov;
	struct tx_slot *t;
	int r = send_device_data(w);

	if (r < 0)
		return r;
	t = next_slot(w);
	re = (struct mig_round_end){ s->job_round, s->job_final, w->frames };
	mig_wire_le(&mig_wl_round_end, &re, 1);
	memcpy(t->buf, &re, sizeof(re));
	w->frames = 0;
	piov = (struct iovec){ t->buf, sizeof(re) };
	mig_frame_seal(&t->hdr, MIG_FRAME_ROUND_END, 0, ++w->seq, &piov, 1);
	r = tx_submit(w, t, &piov, 1);
	return r < 0 ? r : tx_wait(w);
}

static void tx_worker_main(struct xport_worker *xw)
{
	struct tx_worker *w = container_of(xw, struct tx_worker, xw);
	struct src *s = w->s;
	uint64_t gen = w->gen0;

	for (;;) {
		bool quit;
		int r;

		pthread_mutex_lock(&s->lock);
		while (s->gen == gen && !s->quit)
			pthread_cond_wait(&s->go, &s->lock);
		gen = s->gen;
		quit = s->quit;
		pthread_mutex_unlock(&s->lock);
		if (quit)
			break;
		r = tx_job(w);
		pthread_mutex_lock(&s->lock);
		if (r < 0) {
			/* the first failure is the cause; the rest stop because of it */
			if (!s->werr.code)
				s->werr = w->err;
			__atomic_store_n(&s->stop, true, __ATOMIC_RELAXED);
		}
		if (--s->pending == 0)
			pthread_cond_signal(&s->done);
		pthread_mutex_unlock(&s->lock);
		mig_error_clear(&w->err);
	}
}

/* Start the workers on a job: every page whose bit is set in s->bitmap
 * (post-copy's push: in s->pc_todo), over all streams, then the round's
 * end on each (final: ROUND_END's). */
static void job_start(struct src *s, uint32_t final, bool pc)
{
	s->round_pages = 0;
	pthread_mutex_lock(&s->lock);
	s->job_round = s->round;
	s->job_final = final;
	s->job_live = s->phase == MIG_PHASE_PRECOPY;
	s->job_pc = pc;
	s->pushers = pc && s->n > 1 ? s->n - 1 : s->n;
	s->cursor = 0;
	s->pending = s->n;
	s->gen++;
	pthread_cond_broadcast(&s->go);
	pthread_mutex_unlock(&s->lock);
}

/* The push has sent nothing for PC_STUCK_MS: a break.  The streams are
 * shut down so that the workers' sends end (the recovery closes them). */
static void pc_stuck(struct src *s)
{
	if (!s->werr.code)
		mig_error_set(&s->werr, -ETIMEDOUT, "post-copy: nothing could be sent for %d s: "
			      "the destination reads no more", PC_STUCK_MS / 1000);
	__atomic_store_n(&s->stop, true, __ATOMIC_RELAXED);
	for (unsigned k = 0; k < s->n; k++)
		if (s->w[k].fd >= 0)
			shutdown(s->w[k].fd, SHUT_RDWR);
}

/* Wait for the job's end, serving the progress line meanwhile. */
static int job_wait(struct src *s)
{
	uint64_t sent = counted(&s->res->wire_bytes), moved = mig_now_ms();
	bool stuck = false;
	struct timespec ts;
	int r = 0;

	pthread_mutex_lock(&s->lock);
	while (s->pending) {
		ts = mig_timespec_after(CLOCK_REALTIME, POLL_MS * 1000000ULL);
		if (pthread_cond_timedwait(&s->done, &s->lock, &ts) != ETIMEDOUT)
			continue;
		if (counted(&s->res->wire_bytes) != sent) {
			sent = counted(&s->res->wire_bytes);
			moved = mig_now_ms();
		} else if (!stuck && __atomic_load_n(&s->pc_committed, __ATOMIC_RELAXED) &&
			   mig_now_ms() - moved > PC_STUCK_MS) {
			pc_stuck(s);
			stuck = true;
		}
		pthread_mutex_unlock(&s->lock);
		emit_progress(s, false);
		pthread_mutex_lock(&s->lock);
	}
	if (s->werr.code) {
		s->err = s->werr;
		r = s->err.code;
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int run_job(struct src *s, uint32_t final)
{
	job_start(s, final, false);
	return job_wait(s);
}

/* Tell the workers' threads to end (between jobs, or once theirs stops). */
static void workers_quit(struct src *s)
{
	pthread_mutex_lock(&s->lock);
	s->quit = true;
	pthread_cond_broadcast(&s->go);
	pthread_mutex_unlock(&s->lock);
}

/* A worker's thread, for the jobs after the current one. */
static int worker_thread_start(struct tx_worker *w)
{
	char name[16];

	w->gen0 = w->s->gen;
	snprintf(name, sizeof(name), "mig-tx%u", w->index);
	return xport_worker_start(&w->xw, name, 4, tx_worker_main, &w->s->err);
}

static int workers_start(struct src *s)
{
	int level = s->o->compress.level ? s->o->compress.level : 1;

	s->codec_streams = mem_policy_codec_streams(s->vm->ram_bytes, s->n,
						    codec_stream_bytes(level));
	for (unsigned k = 0; k < s->n; k++) {
		struct tx_worker *w = &s->w[k];

		for (int i = 0; i < 2; i++) {
			w->slot[i].cap = SLOT_META_CAP;
			w->slot[i].buf = malloc(w->slot[i].cap);
			if (!w->slot[i].buf)
				return mig_error_set(&s->err, -ENOMEM, "out of memory");
		}
		if (worker_thread_start(w) < 0)
			return s->err.code;
	}
	return 0;
}

/* Stop the workers and free what they held; their CPU time counts as ours. */
static uint64_t workers_stop(struct src *s)
{
	uint64_t cpu = 0;

	if (!s->w)
		return 0;
	workers_quit(s);
	for (unsigned k = 0; k < s->n; k++) {
		struct tx_worker *w = &s->w[k];

		/* A failed job may leave a frame in flight that points into
		 * guest RAM: the stop cancels and reaps it before the VM can go. */
		cpu += xport_worker_stop(&w->xw);
		if (w->fd >= 0)
			close(w->fd);
		free(w->slot[0].buf);
		free(w->slot[1].buf);
		free(w->slot[0].seal);
		free(w->slot[1].seal);
		free(w->gather);
#if HAVE_ZSTD
		ZSTD_freeCCtx(w->cctx);
#endif
	}
	free(s->w);
	s->w = NULL;
	return cpu;
}

/* A PAGE_REQUEST read off data stream 1: checked whole, then queued for
 * the workers.  A full queue drops the rest: the push brings them too. */
static int take_request(struct src *s, const struct xport_chan_rx *rx)
{
	struct mig_page_request q = { 0 };
	size_t head = offsetof(struct mig_page_request, pfn), len = rx->hdr.length;
	unsigned room;

	if (rx->hdr.type != MIG_FRAME_PAGE_REQUEST || len < head || len > sizeof(q))
		return mig_error_set(&s->rq_err, -EPROTO, "post-copy: a %s frame of %zu bytes "
				     "on data stream 1, where only page requests come back",
				     mig_frame_type_to_string(rx->hdr.type), len);
	memcpy(&q, rx->buf.data, len);
	mig_wire_le(&mig_wl_page_request, &q, 1);
	if (!q.count || q.count > MIG_PAGE_REQUEST_MAX || head + q.count * sizeof(q.pfn[0]) != len)
		return mig_error_set(&s->rq_err, -EBADMSG, "post-copy: PAGE_REQUEST for %u pages "
				     "in %zu bytes", q.count, len);
	for (unsigned i = 0; i < q.count; i++)
		if (q.pfn[i] >= s->nr_pages)
			return mig_error_set(&s->rq_err, -EBADMSG, "post-copy: PAGE_REQUEST for "
					     "page %#llx of a guest of %llu pages",
					     (unsigned long long)q.pfn[i],
					     (unsigned long long)s->nr_pages);
	count(&s->pc_asked, q.count);
	pthread_mutex_lock(&s->rq_lock);
	room = ARRAY_SIZE(s->rq) - s->rq_n;
	room = room < q.count ? room : q.count;
	memcpy(s->rq + s->rq_n, q.pfn, room * sizeof(q.pfn[0]));
	s->rq_n += room;
	pthread_cond_signal(&s->rq_cond);
	pthread_mutex_unlock(&s->rq_lock);
	return 0;
}

/* Post-copy's request reader: PAGE_REQUEST frames come back on data stream
 * 1 against its flow (the destination's fault thread).  A frame that fails
 * its checks fails the migration; the stream's end is the workers' to
 * report. */
static void rq_reader_main(struct xport_worker *xw)
{
	struct src *s = container_of(xw, struct src, rq_xw);
	struct xport_chan_rx rx = { .fd = s->w[0].fd, .ring = &xw->ring, .seq = 1,
				    .aead = s->aead[1] };
	int r = xport_chan_rx_hdr(&rx, &s->rq_err);

	mig_thread_prompt();
	while (r >= 0 && !atomic_load(&s->rq_stop)) {
		struct xport_op *op = NULL;

		r = xport_ring_wait(&xw->ring, POLL_MS, &op, &s->rq_err);
		if (r == -ETIME) {
			mig_error_clear(&s->rq_err);
			r = 0;
			continue;
		}
		if (!op || op->res < 0)
			break;
		r = xport_chan_rx_step(&rx, &s->rq_err);
		if (r == 0)
			continue;
		if (r > 0)
			r = fault_at(s, (struct mig_fault_point){ .kind = MIG_FAULT_FRAME_RECV,
								   .frame_type = rx.hdr.type,
								   .stream = 1, .seq = rx.hdr.seq },
				     &s->rq_err);
		if (r >= 0)
			r = take_request(s, &rx);
		if (r >= 0)
			r = xport_chan_rx_hdr(&rx, &s->rq_err);
	}
	/* A damaged or refused frame, or a read that failed: no request
	 * would be served again, so it is a break like the workers' (a
	 * stream that merely ended is theirs to report). */
	if (r < 0 && !atomic_load(&s->rq_stop)) {
		pthread_mutex_lock(&s->lock);
		if (!s->werr.code)
			s->werr = s->rq_err;
		__atomic_store_n(&s->stop, true, __ATOMIC_RELAXED);
		pthread_mutex_unlock(&s->lock);
	}
	mig_buf_free(&rx.buf);
}

/* Open the control stream and every data stream (the handshake proves
 * both ends belong to this migration) and hand them to the rings. */
static int open_streams(struct src *s)
{
	struct xport_streams who = { .addr = s->o->dest_addr, .id = s->o->id,
				     .secret = s->o->secret, .n = s->n, .encrypt = s->o->encrypt,
				     .aeads = s->aead };
	int fds[MIG_MAX_STREAMS + 1];
	/* After COMMIT in post-copy a cancel is ignored: it must not stop the
	 * link from being made again either. */
	int r = xport_streams_open(&who, __atomic_load_n(&s->pc_committed, __ATOMIC_RELAXED) ?
				   NULL : s->cancel, fds, &s->err);
	struct mig_buf keep = s->ctl_rx.buf;

	if (r < 0)
		return r;
	s->ctl_fd = fds[0];
	s->ctl.fd = s->ctl_fd;
	s->ctl.seq = 1;
	s->ctl.aead = s->aead[0];
	/* the receive buffer stays (a link made again reuses it) */
	s->ctl_rx = (struct xport_chan_rx){ .fd = s->ctl_fd, .ring = &s->ring, .seq = 1,
					    .aead = s->aead[0], .buf = keep };
	s->sealed = s->aead[0] != NULL;
	for (unsigned i = 1; i <= s->n; i++) {
		s->w[i - 1].fd = fds[i];
		s->w[i - 1].seq = 1;
		s->w[i - 1].aead = s->aead[i];
	}
	return 0;
}

static int handover_send(struct src *s, bool accepted);

static int do_setup(struct src *s)
{
	struct mig_setup st = { 0 };
	struct mig_frame_hdr h;
	struct mig_buf pl = { 0 };
	struct mig_reply rep;
	int r;

	r = open_streams(s);
	if (r >= 0)
		r = workers_start(s);
	if (r < 0)
		return r;
	/* Every stream goes to the same address, so the control stream tells
	 * whether page data will cross a wire: only then do per-page sums
	 * guard anything that frame checksums and --verify do not. */
	s->same_host = xport_same_host(s->ctl_fd);
	/* sealed page data is checked by its tag: sums would add nothing */
	if (s->checksum == MIG_CHECKSUM_AUTO)
		s->checksum = s->same_host || s->sealed ? MIG_CHECKSUM_FRAMES : MIG_CHECKSUM_PAGES;
	{
		size_t dl = 0;

		r = s->vm->ops->describe(s->vm, st.vm_desc, &dl, &s->err);
		if (r < 0)
			return r;
	}
	st.nr_pages = s->nr_pages;
	st.page_size = PAGE;
	st.codec = s->codec;
	/* Same-host hand-over: offered at SETUP when this end can do it */
	s->handover = mig_handover_check(s->vm, s->o->handover, s->ctl_fd, s->sealed);
	if (s->handover != MIG_HANDOVER_DONE && s->o->handover == MIG_HANDOVER_ALWAYS)
		return mig_error_set(&s->err, -EOPNOTSUPP, "--handover always: guest RAM cannot "
				     "be handed over: %s", mig_handover_why_to_string(s->handover));
	st.flags = (s->o->verify ? MIG_SETUP_F_VERIFY : 0) |
		   (s->checksum == MIG_CHECKSUM_PAGES ? 0 : MIG_SETUP_F_NO_PAGE_SUMS) |
		   (s->handover == MIG_HANDOVER_DONE ? MIG_SETUP_F_HANDOVER : 0);
	str_copy(st.name, sizeof(st.name), s->o->name);
	if (s->vm->nr_devices > MIG_SETUP_DEVICES_MAX)
		return mig_error_set(&s->err, -E2BIG, "the VM has %u devices; a migration takes "
				     "at most %u", s->vm->nr_devices, MIG_SETUP_DEVICES_MAX);
	st.nr_devices = s->vm->nr_devices;
	/* SETUP: the header, then the device manifest the destination checks
	 * its own VM against before anything moves. */
	mig_wire_le(&mig_wl_setup, &st, 1);
	r = mig_buf_append(&pl, &st, sizeof(st));
	if (r < 0)
		return mig_error_set(&s->err, r, "out of memory");
	r = mig_vm_manifest(s->vm, &pl, &s->err);
	if (r >= 0)
		r = ctl_send(s, MIG_FRAME_SETUP, pl.data, pl.len);
	pl.len = 0;
	if (r < 0) {
		mig_buf_free(&pl);
		return r;
	}
	r = ctl_recv(s, &h, &pl, REPLY_TIMEOUT_MS);
	/* a reply, then (with sessions) the answers, checked below */
	if (r >= 0)
		r = expect(s, &h, MIG_FRAME_READY,
			   s->sessions && h.length > sizeof(rep) ? h.length : sizeof(rep));
	if (r >= 0) {
		memcpy(&rep, pl.data, sizeof(rep));
		mig_wire_le(&mig_wl_reply, &rep, 1);
		rep.msg[sizeof(rep.msg) - 1] = '\0';
		if (rep.status < 0)
			r = mig_error_set(&s->err, rep.status, "the destination could not prepare: %s",
					  rep.msg);
	}
	/* the destination's devices answered ours (mig_session_ops) */
	if (r >= 0 && s->sessions)
		r = mig_vm_session_unpack(s->vm, MIG_SESSION_ANSWER, pl.data + sizeof(rep),
					  pl.len - sizeof(rep), &s->err);
	mig_buf_free(&pl);
	if (r >= 0 && s->handover == MIG_HANDOVER_DONE)
		r = handover_send(s, rep.flags & MIG_READY_F_HANDOVER);
	return r;
}

/* The destination took the hand-over (READY) or not: if it did, guest RAM's
 * memfd goes to it now, while the guest runs on here (the destination maps
 * it and never runs it before COMMIT). */
static int handover_send(struct src *s, bool accepted)
{
	struct mig_handover h = { .ram_bytes = s->vm->ram_bytes, .nr_pages = s->nr_pages };
	int r;

	if (!accepted) {
		s->handover = MIG_HANDOVER_DECLINED;
		return s->o->handover == MIG_HANDOVER_ALWAYS ?
		       mig_error_set(&s->err, -EOPNOTSUPP, "--handover always: guest RAM cannot "
				     "be handed over: %s",
				     mig_handover_why_to_string(s->handover)) : 0;
	}
	r = fault_at(s, (struct mig_fault_point){ .kind = MIG_FAULT_FRAME_SEND,
						   .frame_type = MIG_FRAME_HANDOVER, .stream = 0,
						   .seq = s->ctl.seq + 1 }, &s->err);
	if (r >= 0)
		r = mig_handover_send(s->ctl_fd, ++s->ctl.seq, s->vm->ops->ram_fd(s->vm), &h,
				      &s->err);
	if (r >= 0)
		count(&s->res->wire_bytes, sizeof(struct mig_frame_hdr) + sizeof(h));
	return r;
}

/* After the TRACK walk: what the devices opened goes to the destination's,
 * and no page moves before it took it. */
static int do_open(struct src *s)
{
	struct mig_frame_hdr h;
	struct mig_buf pl = { 0 };
	struct mig_reply rep;
	int r = mig_vm_session_pack(s->vm, MIG_SESSION_OPEN, &pl, &s->err);

	if (r >= 0)
		r = ctl_send(s, MIG_FRAME_OPEN, pl.data, pl.len);
	pl.len = 0;
	if (r >= 0)
		r = ctl_recv(s, &h, &pl, REPLY_TIMEOUT_MS);
	if (r >= 0)
		r = expect(s, &h, MIG_FRAME_OPENED, sizeof(rep));
	if (r >= 0) {
		memcpy(&rep, pl.data, sizeof(rep));
		mig_wire_le(&mig_wl_reply, &rep, 1);
		rep.msg[sizeof(rep.msg) - 1] = '\0';
		if (rep.status < 0)
			r = mig_error_set(&s->err, rep.status, "the destination did not take the "
					  "devices' session: %s", rep.msg);
	}
	mig_buf_free(&pl);
	return r;
}

/* auto: after round 0's first batches, keep zstd only if it moves guest bytes
 * faster than the link moves raw ones. */
static void auto_codec(struct src *s, uint64_t link_bps)
{
	double comp_bps, ratio;

	if (s->o->compress.codec != XPORT_CODEC_AUTO || !s->probe_ns || !s->probe_comp)
		return;
	comp_bps = (double)s->probe_raw * 1e9 / (double)s->probe_ns;
	ratio = (double)s->probe_raw / (double)s->probe_comp;
	/* zstd delivers min(compress speed, link x ratio) guest bytes per second;
	 * keep it only for a clear gain (10%), since it also costs CPU the guest
	 * could use. */
	if ((comp_bps < (double)link_bps * ratio ? comp_bps : (double)link_bps * ratio) <=
	    1.1 * (double)link_bps)
		s->codec = XPORT_CODEC_NONE;
}

/* The devices with state, each given a data stream in turn. */
static int devices_init(struct src *s)
{
	struct mig_vm *vm = s->vm;

	s->dev = calloc(vm->nr_devices ? vm->nr_devices : 1, sizeof(*s->dev));
	s->states = calloc(vm->nr_devices ? vm->nr_devices : 1, sizeof(*s->states));
	if (!s->dev || !s->states)
		return mig_error_set(&s->err, -ENOMEM, "out of memory");
	for (unsigned i = 0; i < vm->nr_devices; i++) {
		if (!mig_device_has_state(vm->devices[i]))
			continue;
		s->dev[s->ndev] = (struct dev_tx){ .index = i, .stream = 1 + s->ndev % s->n };
		s->ndev++;
	}
	return 0;
}

/* Before a PRECOPY round: each device's pre-copy data for it, up to a
 * budget. */
static int devices_precopy(struct src *s)
{
	for (unsigned k = 0; k < s->ndev; k++) {
		struct dev_tx *x = &s->dev[k];
		struct mig_device *d = s->vm->devices[x->index];
		const struct mig_precopy_ops *ops = d->cls->precopy_ops;
		struct mig_buf_writer bw;
		int r;

		x->kind = 0;
		if (!ops || !ops->pending(d))
			continue;
		s->states[x->index].len = 0;
		mig_buf_writer_init(&bw, &s->states[x->index]);
		r = ops->save_chunk(d, &bw.w, DEVICE_PRECOPY_BUDGET, &s->err);
		if (r < 0)
			return mig_error_prefix(&s->err, "pre-copy data of %s %u", d->cls->name, d->id);
		if (s->states[x->index].len)
			x->kind = MIG_FRAME_F_PRECOPY;
	}
	return 0;
}

/* After a job: what it sent of each device is counted. */
static void devices_sent(struct src *s)
{
	for (unsigned k = 0; k < s->ndev; k++) {
		struct dev_tx *x = &s->dev[k];
		uint64_t len = s->states[x->index].len;

		if (!x->kind)
			continue;
		x->offset[x->kind == MIG_FRAME_F_FINAL] += len;
		s->vm->devices[x->index]->bytes += len;
		if (x->kind == MIG_FRAME_F_FINAL)
			s->res->vcpu_state_bytes += len;
		x->kind = 0;
	}
}

static struct mig_walk walk_opts(struct src *s, bool cuttable, unsigned filter);

static int do_precopy(struct src *s)
{
	struct conv_decision d = { 0 };
	uint64_t r0_t0, n_dirty = 0, pages;
	int r;

	s->precopy_t0 = mig_now_ms();
	s->g0 = s->gmark = s->gev = guest_progress(s);
	s->g0_ms = s->gmark_ms = s->gev_ms = s->precopy_t0;
	s->nthr = mig_vm_throttled(s->vm);
	if (s->nthr && s->o->conv.mode != CONV_MODE_NONE) {
		s->vpct = calloc(s->nthr, sizeof(*s->vpct));
		s->vdirty = calloc(s->nthr, sizeof(*s->vdirty));
		if (!s->vpct || !s->vdirty)
			return mig_error_set(&s->err, -ENOMEM, "out of memory");
		mig_vm_dirty_by_vcpu(s->vm, s->vdirty, s->nthr);
	}
	/* The devices' own dirty tracking (a device's DMA log) goes on with
	 * RAM's, then the TRACK walk opens their pre-copy sessions; from its
	 * first arc a failure rolls every device back. */
	r = mig_vm_devices_dirty_start(s->vm, &s->err);
	if (r < 0)
		return r;
	s->tracking = true;
	s->walked = true;
	{
		struct mig_walk w = walk_opts(s, true, 0);

		r = mig_vm_walk(s->vm, MIG_STAGE_TRACK, &w, &s->err);
		if (r >= 0 && s->sessions)
			r = do_open(s);
		if (r < 0)
			return r;
	}
	/* Start tracking from here: clear (and, lazily, protect) everything. */
	memset(s->bitmap, 0, s->words * 8);
	r = s->vm->ops->dirty_sync(s->vm, s->bitmap, NULL, &s->err);
	if (r < 0)
		return r;
	/* Round 0: every page (zero pages travel as a flag). */
	memset(s->bitmap, 0xff, s->words * 8);
	for (s->round = 0;; s->round++) {
		struct conv_round cr = { 0 };
		uint64_t wire_before = s->res->wire_bytes;

		r0_t0 = mig_now_ms();
		if (s->o->compress.codec == XPORT_CODEC_AUTO && s->round == 0)
			s->codec = XPORT_CODEC_ZSTD;
		r = devices_precopy(s);
		if (r >= 0)
			r = run_job(s, false);
		if (r < 0)
			return r;
		devices_sent(s);
		cr.round = s->round;
		cr.round_ms = mig_now_ms() - r0_t0;
		cr.elapsed_ms = mig_now_ms() - s->precopy_t0;
		cr.sent_bytes = s->res->wire_bytes - wire_before;
		cr.sent_pages = s->round_pages;
		cr.bandwidth_bps = cr.round_ms ? cr.sent_bytes * 1000 / cr.round_ms : cr.sent_bytes * 1000;
		pages = s->res->normal_pages + s->res->zero_pages;
		cr.page_wire_bytes = pages ? s->res->wire_bytes / pages : PAGE;
		if (s->round == 0)
			auto_codec(s, cr.bandwidth_bps);
		memset(s->bitmap, 0, s->words * 8);
		r = s->vm->ops->dirty_sync(s->vm, s->bitmap, &n_dirty, &s->err);
		if (r < 0)
			return r;
		cr.dirty_pages = n_dirty;
		cr.prev_dirty_pages = s->round_pages;
		cr.device_bytes = mig_vm_state_estimate(s->vm);
		cr.throttle_pct = s->cs.throttle_pct;
		conv_policy_step(&s->conv, &cr, &s->cs, &d);
		s->remaining = d.remaining_bytes;
		s->dirty_rate = d.dirty_rate_bps;
		s->expected_dt = d.expected_downtime_ms;
		if (d.stall) {
			s->res->stall_action = d.stall;
			s->res->stall_ms = cr.elapsed_ms;
		}
		if (d.action == CONV_CONTINUE && (d.throttle_pct || s->thr_now)) {
			r = throttle_apply(s, d.throttle_pct);
			if (r < 0)
				return r;
		}
		emit_progress(s, true);
		if (d.action == CONV_SWITCHOVER || d.action == CONV_FORCE_SWITCHOVER ||
		    d.action == CONV_POSTCOPY) {
			s->postcopy = d.action == CONV_POSTCOPY;
			s->res->postcopy_round = s->postcopy ? s->round + 1 : 0;
			s->round++;
			return 0;
		}
		if (d.action == CONV_ABORT)
			return mig_error_set(&s->err, -ETIMEDOUT, "%s (round %u, %llu ms)", d.reason,
					     s->round, (unsigned long long)cr.elapsed_ms);
		if (cancelled(s))
			return mig_error_set(&s->err, -ECANCELED, "cancelled");
	}
}

/*
 * The switch to post-copy, in STOP_COPY after the final sync: POSTCOPY
 * tells the destination which pages come only after its vCPUs start (those
 * the sync left dirty), and the last round before COMMIT carries no page,
 * only the devices' state.
 */
static int pc_switch(struct src *s)
{
	struct mig_postcopy pc = { .nr_pages = s->nr_pages, .words = s->words };
	struct mig_buf b = { 0 };
	int r;

	for (uint64_t i = 0; i < s->words; i++)
		pc.to_come += (uint64_t)__builtin_popcountll(s->bitmap[i]);
	s->pc_todo = s->bitmap;
	s->bitmap = calloc(s->words, 8);
	if (!s->bitmap || mig_buf_reserve(&b, sizeof(pc) + s->words * 8) < 0) {
		mig_buf_free(&b);
		return mig_error_set(&s->err, -ENOMEM, "out of memory");
	}
	mig_wire_le(&mig_wl_postcopy, &pc, 1);
	memcpy(b.data, &pc, sizeof(pc));
	memcpy(b.data + sizeof(pc), s->pc_todo, s->words * 8);
	mig_wire_le64s((uint64_t *)(b.data + sizeof(pc)), s->words);
	r = ctl_send(s, MIG_FRAME_POSTCOPY, b.data, sizeof(pc) + s->words * 8);
	mig_buf_free(&b);
	s->res->postcopy = 1;
	return r;
}

/* Post-copy's push: every page still to come, asked-for ones first, on
 * all streams; the request reader feeds the workers. */
static int pc_push_start(struct src *s)
{
	char name[16] = "mig-pcreq";

	s->round++;
	atomic_store(&s->rq_stop, false);
	s->rq_n = 0;
	if (xport_worker_start(&s->rq_xw, name, 4, rq_reader_main, &s->err) < 0)
		return s->err.code;
	job_start(s, 1, true);
	return 0;
}

static int pc_push_end(struct src *s);

/* The rest of post-copy once the push runs: its end, then RUNNING kind 2
 * once the destination has every page. */
static int pc_finish(struct src *s, struct mig_frame_hdr *h, struct mig_buf *pl,
		     struct mig_running *run)
{
	int r = pc_push_end(s);

	/* The push's last pages may still be in the streams' socket buffers
	 * on a slow link, and then the destination's health check runs: its
	 * confirmation is given the reply bound, not the switchover's, so
	 * that a slow link is not taken for a break just as it ends (the
	 * transport's own bound notices a peer that is gone). */
	if (r >= 0)
		r = ctl_recv(s, h, pl, REPLY_TIMEOUT_MS);
	if (r >= 0)
		r = expect_running(s, h, pl, 2, run);
	return r;
}

/* Pages post-copy has not sent yet. */
static uint64_t pc_left(const struct src *s)
{
	uint64_t n = 0;

	for (uint64_t i = 0; s->pc_todo && i < s->words; i++)
		n += (uint64_t)__builtin_popcountll(s->pc_todo[i]);
	return n;
}

/*
 * Post-copy's link broke: neither half may go.  The workers and the reader
 * stop, every stream closes; new streams are opened to the same listener
 * (the destination waits for them) until --recover-window runs out.  The
 * destination's PC_RESUME says which pages are still missing and in which
 * round its data streams go on; the push starts again from there.
 */
static int pc_recover(struct src *s)
{
	uint64_t window = s->o->recover_ms ? s->o->recover_ms : MIG_RECOVER_DEFAULT_MS;
	uint64_t end = mig_now_ms() + window, now;
	struct mig_error why = s->err;
	struct mig_frame_hdr h;
	struct mig_buf pl = { 0 };
	struct mig_postcopy pc;
	int r;

	__atomic_store_n(&s->stop, true, __ATOMIC_RELAXED);
	pc_push_end(s);
	/* every thread and every stream of the broken link goes */
	workers_quit(s);
	for (unsigned k = 0; k < s->n; k++) {
		struct tx_worker *w = &s->w[k];

		if (w->fd >= 0)
			shutdown(w->fd, SHUT_RDWR);
		s->halted_cpu_ms += xport_worker_stop(&w->xw);
		if (w->fd >= 0)
			close(w->fd);
		w->fd = -1;
		/* the round begins again on the new stream */
		w->frames = 0;
		w->urgent = false;
	}
	if (s->ctl_fd >= 0) {
		shutdown(s->ctl_fd, SHUT_RDWR);
		xport_ring_exit(&s->ring);
		close(s->ctl_fd);
		s->ctl_fd = -1;
	}
	for (unsigned i = 0; i < ARRAY_SIZE(s->aead); i++) {
		xport_aead_free(s->aead[i]);
		s->aead[i] = NULL;
	}
	pthread_mutex_lock(&s->lock);
	s->quit = false;
	s->stop = false;
	mig_error_clear(&s->werr);
	pthread_mutex_unlock(&s->lock);
	s->ctl.busy = false;
	mig_error_clear(&s->err);
	emit_progress(s, true);
	for (;;) {
		r = xport_ring_init(&s->ring, 64, &s->err);
		if (r >= 0)
			r = open_streams(s);
		if (r >= 0)
			break;
		xport_ring_exit(&s->ring);
		/* Refused: nothing listens there any more.  The destination's
		 * agent died or gave up, and its half of the VM with it. */
		if (r == -ECONNREFUSED || r == -ENOENT) {
			struct mig_error last = s->err;

			mig_error_clear(&s->err);
			return mig_error_set(&s->err, r, "post-copy: the link broke (%s), and the "
					     "destination's listener is gone (%s): its agent died or "
					     "gave up its half of the VM", why.msg, last.msg);
		}
		now = mig_now_ms();
		if (now >= end) {
			struct mig_error last = s->err;

			mig_error_clear(&s->err);
			return mig_error_set(&s->err, r, "post-copy: the link broke (%s), and it was "
					     "not made again within %llu s (--recover-window): %s",
					     why.msg, (unsigned long long)window / 1000, last.msg);
		}
		/* every second, and once more at the window's end */
		usleep((useconds_t)(end - now < 1000 ? end - now : 1000) * 1000);
	}
	s->res->postcopy_breaks++;
	r = ctl_recv(s, &h, &pl, REPLY_TIMEOUT_MS);
	if (r >= 0)
		r = expect(s, &h, MIG_FRAME_PC_RESUME, sizeof(pc) + s->words * 8);
	if (r >= 0) {
		memcpy(&pc, pl.data, sizeof(pc));
		mig_wire_le(&mig_wl_postcopy, &pc, 1);
		if (pc.nr_pages != s->nr_pages || pc.words != s->words || !pc.round)
			r = mig_error_set(&s->err, -EBADMSG, "PC_RESUME for %llu pages, round %u: "
					  "the VM has %llu pages", (unsigned long long)pc.nr_pages,
					  pc.round, (unsigned long long)s->nr_pages);
	}
	if (r >= 0) {
		memcpy(s->pc_todo, pl.data + sizeof(pc), s->words * 8);
		mig_wire_le64s(s->pc_todo, s->words);
		if (s->nr_pages % 64)
			s->pc_todo[s->words - 1] &= (1ULL << (s->nr_pages % 64)) - 1;
		s->round = pc.round - 1;
		for (unsigned k = 0; r >= 0 && k < s->n; k++)
			r = worker_thread_start(&s->w[k]);
	}
	mig_buf_free(&pl);
	if (r >= 0)
		r = pc_push_start(s);
	return r < 0 ? mig_error_prefix(&s->err, "post-copy, recovering from a break (%s)",
					 why.msg) : 0;
}

static int pc_push_end(struct src *s)
{
	int r = job_wait(s);

	atomic_store(&s->rq_stop, true);
	if (s->rq_xw.started)
		xport_worker_stop(&s->rq_xw);
	return r;
}

/*
 * PRECOPY of a hand-over: the destination maps the same RAM, so no page
 * moves and nothing is tracked (no dirty log sync, which would
 * write-protect all of RAM for nothing).  The TRACK walk still opens the
 * devices' pre-copy, and a device with pre-copy data sends it in rounds of
 * no pages until it has none.
 */
static int handover_precopy(struct src *s)
{
	struct mig_walk w = walk_opts(s, true, 0);
	int r;

	s->precopy_t0 = mig_now_ms();
	s->walked = true;
	r = mig_vm_walk(s->vm, MIG_STAGE_TRACK, &w, &s->err);
	for (s->round = 0; r >= 0; s->round++) {
		bool any = false;

		r = devices_precopy(s);
		for (unsigned k = 0; r >= 0 && k < s->ndev; k++)
			any |= s->dev[k].kind != 0;
		if (r < 0 || !any)
			break;
		r = run_job(s, false);
		if (r >= 0)
			devices_sent(s);
		if (r >= 0 && cancelled(s))
			r = mig_error_set(&s->err, -ECANCELED, "cancelled");
	}
	s->remaining = 0;
	emit_progress(s, true);
	return r;
}

/* The VM stays paused on the source while it asks: a short wait each. */
#define SUMS_TIMEOUT_MS 15000

/* mig_where_ram_differs()'s view of the destination: its sums, over the
 * control stream. */
static int fetch_dest_sums(void *ctx, uint64_t first, uint32_t count, uint32_t per,
			   uint64_t *out)
{
	struct mig_sums_request q = { first, count, per };
	struct src *s = ctx;
	struct mig_frame_hdr h;
	struct mig_buf pl = { 0 };
	int r;

	mig_wire_le(&mig_wl_sums_request, &q, 1);
	r = ctl_send(s, MIG_FRAME_SUMS_REQUEST, &q, sizeof(q));
	if (r >= 0)
		r = ctl_recv(s, &h, &pl, SUMS_TIMEOUT_MS);
	if (r >= 0)
		r = expect(s, &h, MIG_FRAME_SUMS, (size_t)count * sizeof(*out));
	if (r >= 0) {
		memcpy(out, pl.data, (size_t)count * sizeof(*out));
		mig_wire_le64s(out, count);
	}
	mig_buf_free(&pl);
	return r;
}

/* After the digests differed: say where, for the error message.  The
 * source's RAM is frozen and the destination keeps its copy until ABORT;
 * s->bitmap still holds the pages of the final round. */
static void where_ram_differs(struct src *s, char *out, size_t n)
{
	struct mig_error saved = s->err;
	int r = mig_where_ram_differs(s->ram, s->nr_pages, s->bitmap, fetch_dest_sums, s, out,
				      n);

	if (r < 0)
		snprintf(out, n, "the destination could not say where: %.200s",
			 s->err.code ? s->err.msg : strerror(-r));
	s->err = saved;
}

void mig_source_release(struct mig_vm *vm)
{
	struct mig_walk w = { 0 };

	/* bookkeeping arcs: a failure here leaves nothing to undo */
	mig_vm_walk(vm, MIG_STAGE_RELEASE, &w, NULL);
}

int mig_source_resume(struct mig_vm *vm, struct mig_error *err)
{
	struct mig_walk w = { 0 };

	return mig_vm_walk(vm, MIG_STAGE_ROLLBACK, &w, err);
}

struct hash_job {
	struct mig_vm *vm;
	atomic_bool stop;             /* cancel or the deadline: the VM is paused meanwhile */
	atomic_bool finished;
	struct mig_digest digest;
	int r;
	uint64_t done_ns;
	bool pc;                      /* post-copy's order-free digest */
	const uint8_t *ram;
	uint64_t nr_pages;
};

static void *hash_worker(void *arg)
{
	struct hash_job *j = arg;

	uint64_t sum[2] = { 0, 0 };

	if (j->pc) {
		j->r = mig_pc_digest_ram(j->ram, j->nr_pages, NULL, &j->stop, sum);
		j->digest = (struct mig_digest){ .hi = sum[0], .lo = sum[1] };
	} else {
		j->r = j->vm->ops->digest(j->vm, &j->stop, &j->digest);
	}
	j->done_ns = mig_realtime_ns();
	atomic_store(&j->finished, true);
	return NULL;
}

/* Wait for the hash of our RAM, stopping it on cancel or at the deadline
 * (or at once if the wait for LOADED already failed). */
static void hash_join(struct src *s, struct hash_job *j, pthread_t t, bool stop)
{
	while (!atomic_load(&j->finished)) {
		struct timespec ts = { 0, 10 * 1000000L };

		if (stop || cancelled(s) || past_deadline(s))
			atomic_store(&j->stop, true);
		nanosleep(&ts, NULL);
	}
	pthread_join(t, NULL);
}

/* The walk options of this migration: the cancel flag, the switchover
 * deadline (0 outside STOP_COPY) and the fault hook.  A rollback or a
 * release is never cut short. */
static struct mig_walk walk_opts(struct src *s, bool cuttable, unsigned filter)
{
	return (struct mig_walk){
		.cancel = cuttable ? s->cancel : NULL,
		.deadline_ms = cuttable ? __atomic_load_n(&s->deadline_ms, __ATOMIC_RELAXED) : 0,
		.filter = filter,
		.fault = s->o->fault, .fault_arg = s->o->fault_arg,
	};
}

/* Each device as the engine leaves it, for the RESULT. */
static void report_devices(struct src *s, struct mig_event_device *devs)
{
	struct mig_vm *vm = s->vm;
	unsigned n = vm->nr_devices < MIG_EVENT_DEVICES_MAX ? vm->nr_devices : MIG_EVENT_DEVICES_MAX;

	for (unsigned i = 0; i < n; i++) {
		struct mig_device *d = vm->devices[i];

		devs[i] = (struct mig_event_device){
			.cls = d->cls->id, .id = d->id, .state = (uint32_t)d->state, .notes = d->notes,
			.bytes = d->cls->carries_ram ? s->res->wire_bytes : d->bytes,
		};
	}
	s->res->nr_devices = n;
}

/*
 * The guest's downtime: from our vCPUs' stop to the destination's start.
 * The two hosts' clocks give it at once (run->start_realtime_ns less our
 * stop), but only as well as they agree, and a clock that is off by
 * seconds must not make a 3 ms hand-over read as 4 s or as 0.  Durations
 * on each side's own clock bound it instead: at most the time from our
 * stop to RUNNING's arrival, less the destination's time from its start
 * to sending RUNNING; at least that, less the round trip COMMIT and
 * RUNNING took on the wire.  The clocks' figure is kept inside those
 * bounds.  Verification's time is left out throughout.
 */
static uint64_t downtime_ms(uint64_t t_stop_real, uint64_t m_stop, uint64_t m_commit,
			    uint64_t m_running, uint64_t verify_ns, const struct mig_running *run)
{
	uint64_t held = m_running - m_stop, hi, lo, rtt, clock;

	hi = held > run->since_start_ns + verify_ns ? held - run->since_start_ns - verify_ns : 0;
	rtt = m_running - m_commit > run->since_commit_ns ?
	      m_running - m_commit - run->since_commit_ns : 0;
	lo = hi > rtt ? hi - rtt : 0;
	clock = run->start_realtime_ns > t_stop_real + verify_ns ?
		run->start_realtime_ns - t_stop_real - verify_ns : 0;
	if (clock < lo)
		clock = lo;
	if (clock > hi)
		clock = hi;
	return clock / 1000000;
}

int mig_source_run(struct mig_vm *vm, const struct mig_out_opts *o, atomic_bool *cancel,
		   mig_event_fn fn, void *arg, struct mig_event *res,
		   struct mig_event_device *devs)
{
	struct src s = {
		.vm = vm, .o = o, .cancel = cancel, .fn = fn, .arg = arg, .res = res,
		.lock = PTHREAD_MUTEX_INITIALIZER, .bw_lock = PTHREAD_MUTEX_INITIALIZER,
		.go = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER,
		.rq_lock = PTHREAD_MUTEX_INITIALIZER, .rq_cond = PTHREAD_COND_INITIALIZER,
	};
	struct mig_buf pl = { 0 };
	struct mig_frame_hdr h;
	struct mig_loaded loaded;
	struct mig_running run;
	struct mig_digest dsrc;
	struct mig_walk w;
	uint64_t t_stop_ns = 0, cpu0 = mig_cpu_ms(), t_hashed_ns = 0, t_loaded_ns = 0;
	uint64_t m_stop_ns = 0, m_commit_ns = 0, m_running_ns = 0;
	uint64_t verify_ns = 0, setup_wire = 0;
	struct hash_job hj = { .r = 0 };
	pthread_t hash_thread;
	bool hashing = false;
	bool committed = false, has_progress;
	bool pc_early = false;     /* post-copy broke before RUNNING kind 1 came */
	uint64_t progress_before = 0;
	int r;

	pthread_setname_np(pthread_self(), "mig-source");
	memset(res, 0, sizeof(*res));
	res->kind = MIG_EVENT_RESULT;
	s.t0_ms = s.phase_t0 = mig_now_ms();
	s.phase = MIG_PHASE_SETUP;
	s.n = o->streams;
	s.codec = o->compress.codec;
	s.checksum = o->checksum;
	res->streams = s.n;
	s.ram = vm->ram;
	res->ram_total_bytes = vm->ram_bytes;
	s.nr_pages = mig_vm_pages(vm);
	s.page_hooks = mig_vm_has_page_hooks(vm);
	s.sessions = mig_vm_has_sessions(vm);
	s.words = mig_vm_bitmap_words(vm);
	s.bitmap = calloc(s.words, 8);
	s.w = calloc(s.n, sizeof(*s.w));
	s.ctl_fd = -1;
	for (unsigned k = 0; s.w && k < s.n; k++)
		s.w[k] = (struct tx_worker){ .s = &s, .index = k + 1, .fd = -1 };
	if (!s.bitmap || !s.w) {
		r = mig_error_set(&s.err, -ENOMEM, "out of memory");
		goto out;
	}
#if !HAVE_ZSTD
	if (s.codec != XPORT_CODEC_NONE) {
		r = mig_error_set(&s.err, -ENOTSUP, "this build has no zstd");
		goto out;
	}
#endif
	r = xport_ring_init(&s.ring, 64, &s.err);
	if (r < 0)
		goto out;
	emit_progress(&s, true);
	r = devices_init(&s);
	/* Whether the VM can run with pages missing (its classes say): auto
	 * goes post-copy on a stall only then, and post-copy asked for (or a
	 * stall's action) is refused before anything moves otherwise. */
	s.conv = o->conv;
	if (r >= 0) {
		struct mig_error why = { 0 };

		s.conv.postcopy_ok = mig_vm_postcopy_check(vm, false, &why) >= 0;
		if (!s.conv.postcopy_ok && (o->conv.mode == CONV_MODE_POSTCOPY ||
					    o->conv.stall_action == CONV_STALL_POSTCOPY)) {
			s.err = why;
			r = why.code;
		}
	}
	if (r >= 0)
		r = do_setup(&s);
	if (r < 0)
		goto out;
	res->setup_ms = mig_now_ms() - s.t0_ms;

	r = set_phase(&s, MIG_PHASE_PRECOPY);
	if (r < 0)
		goto out;
	setup_wire = res->wire_bytes;
	if (vm->ops->kvm) {
		s.kvm0_ms = mig_now_ms();
		vm->ops->kvm(vm, &s.kvm0);
	}
	r = s.handover == MIG_HANDOVER_DONE ? handover_precopy(&s) : do_precopy(&s);
	kvm_since_precopy(&s, res);
	guest_mark(&s, s.thr_now);
	{
		/* 0 when no round ran (a hand-over's PRECOPY has none) */
		uint64_t ms = s.g0_ms ? s.gmark_ms - s.g0_ms : 0;

		res->guest_rate = ms && s.gmark >= s.g0 ? (s.gmark - s.g0) * 1000 / ms : 0;
		res->guest_rate_free = s.gfree_ms ? s.gfree * 1000 / s.gfree_ms : 0;
	}
	if (r < 0)
		goto out;

	/* STOP_COPY: from here the guest is not running anywhere, and the
	 * switchover deadline bounds how long it stays so before COMMIT. */
	res->precopy_wire_bytes = res->wire_bytes - setup_wire;
	s.switchover_ms = o->switchover_timeout_ms ? o->switchover_timeout_ms :
			  conv_switchover_timeout_ms(&o->conv, s.expected_dt,
						     res->ram_total_bytes, o->verify);
	res->switchover_timeout_ms = s.switchover_ms;
	r = set_phase(&s, MIG_PHASE_STOP_COPY);
	if (r < 0)
		goto out;
	t_stop_ns = mig_realtime_ns();
	m_stop_ns = mig_clock_ns(CLOCK_MONOTONIC);
	__atomic_store_n(&s.deadline_ms, mig_now_ms() + s.switchover_ms, __ATOMIC_RELAXED);
	/* From the first arc of this walk, a failure rolls every device back. */
	s.walked = true;
	w = walk_opts(&s, true, 0);
	r = mig_vm_walk(vm, MIG_STAGE_QUIESCE, &w, &s.err);
	/* stopped now (or failing back to running): free of the throttle */
	throttle_release(&s);
	/* The guest ran until its last vCPU stopped: the downtime starts there,
	 * not at the request (a device that quiesces first, a vCPU thread
	 * slow to be scheduled on a loaded host, ran the guest meanwhile). */
	if (r >= 0) {
		uint64_t mono, real;

		if (mig_vm_run_last_stop(vm, &mono, &real) && mono > m_stop_ns) {
			m_stop_ns = mono;
			t_stop_ns = real;
		}
	}
	/* Saves that write guest RAM (an ITS's tables) come before the final
	 * sync; the sync adds what was dirtied since the last PRECOPY sync to
	 * the bitmap, which still holds that one's pages; then nothing can
	 * dirty RAM, and the rest is saved. */
	if (r >= 0) {
		w = walk_opts(&s, true, MIG_WALK_RAM_WRITERS);
		r = mig_vm_walk(vm, MIG_STAGE_SAVE, &w, &s.err);
	}
	/* (a hand-over's RAM is the destination's already: nothing to sync) */
	if (r >= 0 && s.handover != MIG_HANDOVER_DONE)
		r = vm->ops->dirty_sync(vm, s.bitmap, NULL, &s.err);
	if (r >= 0) {
		/* the last sync took the devices' final logs */
		mig_vm_devices_dirty_stop(vm);
		s.tracking = false;
	}
	if (r >= 0) {
		w = walk_opts(&s, true, MIG_WALK_OTHERS);
		r = mig_vm_walk(vm, MIG_STAGE_SAVE, &w, &s.err);
	}
	/* Every device's state goes with the last pages, each device's in
	 * chunks on its own stream. */
	if (r >= 0)
		r = mig_vm_save(vm, s.states, &s.err);
	for (unsigned k = 0; r >= 0 && k < s.ndev; k++)
		s.dev[k].kind = MIG_FRAME_F_FINAL;
	if (r >= 0 && s.postcopy)
		r = pc_switch(&s);
	if (r >= 0)
		r = run_job(&s, s.postcopy ? MIG_ROUND_POSTCOPY : 1);
	if (r < 0)
		goto out;
	devices_sent(&s);
	/* The source's RAM is frozen now: hash it in another thread while
	 * this one waits for LOADED, so both moments are known exactly. */
	if (o->verify) {
		hj.vm = vm;
		hj.pc = s.postcopy;
		hj.ram = s.ram;
		hj.nr_pages = s.nr_pages;
		hashing = pthread_create(&hash_thread, NULL, hash_worker, &hj) == 0;
		if (!hashing)
			hash_worker(&hj);
	}
	r = ctl_recv(&s, &h, &pl, REPLY_TIMEOUT_MS);
	t_loaded_ns = mig_realtime_ns();
	if (hashing)
		hash_join(&s, &hj, hash_thread, r < 0);
	dsrc = hj.digest;
	t_hashed_ns = hj.done_ns;
	if (r >= 0 && hj.r < 0)
		r = hj.r != -ECANCELED ? mig_error_set(&s.err, hj.r, "hashing the source's RAM: %s",
						       strerror(-hj.r)) :
		    cancelled(&s) ? mig_error_set(&s.err, -ECANCELED, "cancelled") :
				    deadline_error(&s, &s.err);
	if (r >= 0)
		r = expect(&s, &h, MIG_FRAME_LOADED, sizeof(loaded));
	if (r < 0)
		goto out;
	memcpy(&loaded, pl.data, sizeof(loaded));
	mig_wire_le(&mig_wl_loaded, &loaded, 1);
	loaded.msg[sizeof(loaded.msg) - 1] = '\0';
	res->rejected_streams = loaded.rejected_streams;
	res->torn_pages = loaded.torn_pages;
	if (loaded.status < 0) {
		r = mig_error_set(&s.err, loaded.status, "the destination could not load the VM: %s",
				  loaded.msg);
		goto out;
	}
	if (o->verify && !s.postcopy) {
		res->verified = 1;
		res->digest_src[0] = dsrc.hi;
		res->digest_src[1] = dsrc.lo;
		res->digest_dst[0] = loaded.digest[0];
		res->digest_dst[1] = loaded.digest[1];
		if (dsrc.hi != loaded.digest[0] || dsrc.lo != loaded.digest[1]) {
			char where[320], ring[160];

			/* Only diagnostics from here: the migration has failed,
			 * and the sums have waits of their own. */
			__atomic_store_n(&s.deadline_ms, 0, __ATOMIC_RELAXED);
			where_ram_differs(&s, where, sizeof(where));
			/* A ring that stopped filling, or one short sync, points
			 * at where reports were lost. */
			ring[0] = '\0';
			if (vm->ops->diagnose)
				vm->ops->diagnose(vm, ring, sizeof(ring));
			r = mig_error_set(&s.err, -EIO, "RAM digests differ at switchover: the "
					  "destination's copy is not the source's (%s)%s%s",
					  where, *ring ? "; " : "", ring);
			goto out;
		}
	}

	/* The last moment a cancel, or the deadline, can take the VM back. */
	if (cancelled(&s)) {
		r = mig_error_set(&s.err, -ECANCELED, "cancelled");
		goto out;
	}
	if (past_deadline(&s)) {
		r = deadline_error(&s, &s.err);
		goto out;
	}
	/* COMMIT: after this frame leaves, the source may never run the VM again
	 * unless the destination says it did not start it. */
	__atomic_store_n(&s.deadline_ms, 0, __ATOMIC_RELAXED);
	r = set_phase(&s, MIG_PHASE_COMMIT);
	if (r < 0)
		goto out;
	committed = true;
	m_commit_ns = mig_clock_ns(CLOCK_MONOTONIC);
	if (s.postcopy)
		__atomic_store_n(&s.pc_committed, true, __ATOMIC_RELAXED);
	r = ctl_send(&s, MIG_FRAME_COMMIT, NULL, 0);
	/* Post-copy: the pages go from now on, as the destination's vCPUs
	 * may wait on one the moment they start. */
	if (r >= 0 && s.postcopy)
		r = pc_push_start(&s);
	if (r >= 0)
		r = ctl_recv(&s, &h, &pl, (int)(s.switchover_ms > START_TIMEOUT_MS ?
					   (s.switchover_ms < REPLY_TIMEOUT_MS ? s.switchover_ms :
					    REPLY_TIMEOUT_MS) : START_TIMEOUT_MS));
	m_running_ns = mig_clock_ns(CLOCK_MONOTONIC);
	if (r >= 0)
		r = expect_running(&s, &h, &pl, 1, &run);
	/* In post-copy the destination may run the VM with pages missing as
	 * soon as COMMIT arrives: a break before its RUNNING comes back is a
	 * break like any later one (a destination that never started has
	 * closed its listener, and making the link again is refused). */
	if (r < 0 && s.postcopy)
		pc_early = true;
	else if (r < 0)
		goto out;
	if (!pc_early && run.status < 0) {
		/* The destination refused to start and said so: it does not run. */
		committed = false;
		r = mig_error_set(&s.err, run.status, "the destination did not start the VM: %s",
				  run.msg);
		goto out;
	}
	/* Downtime without verification.  Without it, LOADED would have come V
	 * (the destination's hashing) earlier and COMMIT would have left at once;
	 * with it, COMMIT also waited for our own hash if that ended after LOADED
	 * arrived.  So verification cost V + max(0, hashed - loaded). */
	if (o->verify)
		verify_ns = loaded.verify_ns +
			    (t_hashed_ns > t_loaded_ns ? t_hashed_ns - t_loaded_ns : 0);
	if (!pc_early) {
		res->downtime_ms = downtime_ms(t_stop_ns, m_stop_ns, m_commit_ns, m_running_ns,
					       verify_ns, &run);
		res->dst_cpu_ms = run.cpu_ms;
	}
	if (s.postcopy) {
		/* the destination does not read it (its pages may be missing):
		 * the guest at the switch is this frozen copy */
		struct mig_vm_health hl;

		vm->ops->health(vm, &hl);
		res->dst_passes_before = hl.passes;
		progress_before = hl.progress;
	} else {
		res->dst_passes_before = run.passes;
		progress_before = run.progress;
	}
	res->verify_ms = verify_ns / 1000000;
	/* Post-copy: the VM runs on the destination with what it has, and
	 * the rest goes; kind 2 comes once every page is there. */
	if (s.postcopy) {
		uint64_t t_pc = mig_now_ms();

		int rp = set_phase(&s, MIG_PHASE_POSTCOPY);

		if (pc_early)
			mig_error_prefix(&s.err, "before the destination said it runs the VM");
		else
			r = rp < 0 ? rp : pc_finish(&s, &h, &pl, &run);
		/* a break: both halves wait, and the link is made again; but a
		 * link that breaks again and again with no page sent between
		 * (a failure the new link meets too) is given up */
		for (uint64_t left = UINT64_MAX, idle = 0, now_left;
		     r < 0 && s.phase == MIG_PHASE_POSTCOPY; left = now_left) {
			now_left = pc_left(&s);
			idle = now_left < left ? 0 : idle + 1;
			if (idle >= PC_IDLE_BREAKS) {
				mig_error_prefix(&s.err, "post-copy: the link broke %u times in a row "
						 "with no page sent between", PC_IDLE_BREAKS);
				break;
			}
			r = pc_recover(&s);
			if (r < 0)
				break;
			r = pc_finish(&s, &h, &pl, &run);
		}
		if (r < 0) {
			mig_error_prefix(&s.err, "post-copy, %llu ms after the VM started on the "
					 "destination", (unsigned long long)(mig_now_ms() - t_pc));
			goto out;
		}
		res->postcopy_requested = run.pc_requested;
		res->postcopy_faults = run.pc_faults;
		res->postcopy_worst_stall_us = run.pc_worst_stall_us;
		res->postcopy_ms = run.pc_ms;
		res->postcopy_pages = run.pc_pages;
		if (run.pc_ms && run.pc_progress >= progress_before)
			res->postcopy_guest_rate = (run.pc_progress - progress_before) * 1000 /
						   run.pc_ms;
		res->dst_passes_after = run.passes;
		res->dst_errors = run.errors;
		res->owner = MIG_OWNER_DESTINATION;
		if (o->verify) {
			res->verified = 1;
			res->digest_src[0] = dsrc.hi;
			res->digest_src[1] = dsrc.lo;
			res->digest_dst[0] = run.pc_digest[0];
			res->digest_dst[1] = run.pc_digest[1];
		}
		if (o->verify && (dsrc.hi != run.pc_digest[0] || dsrc.lo != run.pc_digest[1])) {
			/* The guest runs there on RAM that is not what it left
			 * here.  This copy, as it was at the switch, is the only
			 * one known right: kept, paused and held, for an
			 * operator, not given up. */
			r = mig_error_set(&s.err, -EIO, "RAM digests differ after post-copy: the pages "
					  "the destination holds are not the source's; the VM runs "
					  "there, and the source keeps its copy as it was at the "
					  "switch, paused and held (resume it only once the "
					  "destination's is destroyed)");
			res->result = MIG_RESULT_FAILED;
			res->src_held = 1;
			goto done;
		}
		mig_source_release(vm);
	}
	/* RUNNING kind 2: the destination shows that the guest runs there.
	 * This message, and only this one, moves ownership: until it arrives
	 * the source keeps its paused copy, because a destination that dies
	 * between starting the VM and confirming it would take the only copy
	 * with it. */
	if (!s.postcopy) {
		r = ctl_recv(&s, &h, &pl, CONFIRM_TIMEOUT_MS);
		if (r >= 0)
			r = expect_running(&s, &h, &pl, 2, &run);
		if (r < 0)
			goto out;
		res->dst_passes_after = run.passes;
		res->dst_errors = run.errors;
		res->owner = MIG_OWNER_DESTINATION;
		mig_source_release(vm);
	}
	/* The guest must keep running on the destination, self-check clean (its
	 * vCPUs always; its progress and self-check under --verify). */
	{
		struct mig_vm_health hl;

		vm->ops->health(vm, &hl);
		has_progress = hl.has_progress;
	}
	/* Progress: a whole pass over the working set, or, for one too big to
	 * pass over within the check (3 s), pages checked and stamped anew:
	 * the guest checks each page's last stamp before it writes the next. */
	if (run.status < 0 || (o->verify && (run.errors || (has_progress &&
							      run.passes <= res->dst_passes_before &&
							      run.progress <= progress_before)))) {
		r = mig_error_set(&s.err, run.status < 0 ? run.status : -EIO, "the guest on the "
				  "destination is not healthy: passes %llu -> %llu, pages stamped "
				  "%llu -> %llu, self-check errors %llu %s",
				  (unsigned long long)res->dst_passes_before,
				  (unsigned long long)run.passes, (unsigned long long)progress_before,
				  (unsigned long long)run.progress, (unsigned long long)run.errors,
				  run.msg);
		/* The destination owns the VM (it runs there); report, do not resume. */
		res->result = MIG_RESULT_FAILED;
		goto done;
	}
	set_phase(&s, MIG_PHASE_DONE);
	res->result = MIG_RESULT_COMPLETED;
	r = 0;
	goto done;

out:
	throttle_release(&s);
	/* a post-copy push cut short (the destination refused to start, or a
	 * stream broke): the workers stop before anything else, and what
	 * they say of it ("another stream failed") does not hide the cause */
	if (s.postcopy && s.rq_xw.started) {
		struct mig_error cause = s.err;

		__atomic_store_n(&s.stop, true, __ATOMIC_RELAXED);
		pc_push_end(&s);
		if (cause.code)
			s.err = cause;
	}
	if (!committed && (r == -EPIPE || r == -ECONNRESET) && s.ctl_fd >= 0 && s.ring.ring &&
	    !s.got_abort) {
		/* A send failed in PRECOPY: the destination may have said why on
		 * the control stream before closing. */
		struct mig_frame_hdr ah;
		struct mig_buf apl = { 0 };
		struct mig_error why = s.err;

		s.send_deadline_ms = mig_now_ms() + ABORT_SEND_MS;
		ctl_wait(&s);
		s.send_deadline_ms = 0;
		mig_error_clear(&s.err);
		if (ctl_recv(&s, &ah, &apl, 500) < 0 && s.got_abort)
			why = s.err;
		s.err = why;
		mig_buf_free(&apl);
	}
	if (committed) {
		/* COMMIT may have reached the destination, and whatever came back
		 * (nothing, garbage, even an ABORT) does not say it did not start
		 * the VM: starting the source now could run it twice.  Leave it
		 * paused, held for an operator, and say so. */
		res->result = MIG_RESULT_FAILED;
		res->owner = MIG_OWNER_NONE;
		res->src_held = 1;
		if (s.phase == MIG_PHASE_POSTCOPY && !pc_left(&s))
			mig_error_prefix(&s.err, "post-copy: every page was sent, but the destination "
					 "did not confirm that it has them all and runs the guest; it "
					 "most likely does (check it); the source's copy is kept paused");
		else if (s.phase == MIG_PHASE_POSTCOPY)
			mig_error_prefix(&s.err, "post-copy broke: the VM is split between the hosts, "
					 "its vCPUs on the destination and %llu of its pages here; "
					 "both halves are kept (source paused)",
					 (unsigned long long)pc_left(&s));
		else
			mig_error_prefix(&s.err, "after commit, ownership unknown (source VM kept "
					 "paused)");
	} else {
		struct mig_error_msg m;

		set_phase(&s, MIG_PHASE_ROLLBACK);
		mig_error_msg_fill(&m, r, s.err.msg);
		if (s.ctl_fd >= 0 && s.ring.ring) {
			/* best effort: tell the destination to discard its copy */
			s.send_deadline_ms = mig_now_ms() + ABORT_SEND_MS;
			if (ctl_wait(&s) >= 0)
				ctl_send(&s, MIG_FRAME_ABORT, &m, sizeof(m));
			s.send_deadline_ms = 0;
		}
		if (s.tracking) {
			mig_vm_devices_dirty_stop(vm);
			s.tracking = false;
		}
		if (s.walked) {
			struct mig_error e2 = { 0 };

			if (mig_source_resume(vm, &e2) < 0) {
				/* Not running anywhere: that needs an operator. */
				mig_error_prefix(&s.err, "rollback could not resume the source (%s)", e2.msg);
				res->owner = MIG_OWNER_NONE;
				res->src_held = 1;
			}
		}
		res->result = r == -ECANCELED ? MIG_RESULT_CANCELLED : MIG_RESULT_FAILED;
		if (res->owner != MIG_OWNER_NONE)
			res->owner = MIG_OWNER_SOURCE;
	}
done:
	res->phase_duration_ms[s.phase] = mig_now_ms() - s.phase_t0;
	res->total_ms = mig_now_ms() - s.t0_ms;
	res->round = s.round;
	res->codec = s.codec;
	res->checksum = s.checksum;
	res->same_host = s.same_host;
	res->handover = s.handover;
	res->encrypted = s.sealed;
	/* The link's throughput: PRECOPY moves almost every byte, with nothing
	 * else (setup, verification) in its time. */
	if (res->phase_duration_ms[MIG_PHASE_PRECOPY])
		res->throughput_bps = res->precopy_wire_bytes * 1000 /
				      res->phase_duration_ms[MIG_PHASE_PRECOPY];
	res->dirty_rate_bps = s.dirty_rate;
	res->converge = o->conv.mode;
	res->phase = s.phase;
	report_devices(&s, devs);
	if (r < 0)
		str_copy(res->error, sizeof(res->error), s.err.msg);
	res->src_cpu_ms = workers_stop(&s) + s.halted_cpu_ms;
	res->src_cpu_ms += mig_cpu_ms() - cpu0;
	if (s.ring.ring) {
		/* nothing may still point into our buffers */
		struct xport_op *op;

		while (s.ring.inflight && xport_ring_wait(&s.ring, 1000, &op, NULL) >= 0)
			;
		xport_ring_exit(&s.ring);
	}
	if (s.ctl_fd >= 0)
		close(s.ctl_fd);
	for (unsigned i = 0; i < ARRAY_SIZE(s.aead); i++)
		xport_aead_free(s.aead[i]);
	xport_chan_free(&s.ctl);
	mig_buf_free(&s.ctl_rx.buf);
	free(s.bitmap);
	free(s.pc_todo);
	for (unsigned i = 0; s.states && i < vm->nr_devices; i++)
		mig_buf_free(&s.states[i]);
	free(s.states);
	free(s.dev);
	free(s.vpct);
	free(s.vdirty);
	mig_buf_free(&pl);
	return r;
}
