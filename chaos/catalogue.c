// SPDX-License-Identifier: MIT
/*
 * The fault catalogue (docs/chaos.md): every kind of fault a campaign
 * injects, and how one is made from a seed.  Pure: a fault is a function
 * of (seed, run, kinds) alone, which is what makes a run replayable.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <migrate/chaos.h>
#include <migrate/device.h>
#include <migrate/engine.h>
#include <migrate/netns.h>
#include <migrate/relay.h>
#include <migrate/wire.h>

#include "util.h"

const char *chaos_class_name(enum chaos_class c)
{
	static const char *const names[_CHAOS_CLASS_END] = {
		[CHAOS_NETWORK] = "network", [CHAOS_PROCESS] = "process",
		[CHAOS_DEVICE] = "device", [CHAOS_OPERATOR] = "operator",
		[CHAOS_HOSTILE] = "hostile",
	};

	return (unsigned)c < _CHAOS_CLASS_END && names[c] ? names[c] : "?";
}

/* splitmix64: small, fast, and the same everywhere. */
uint64_t chaos_rng_next(struct chaos_rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

uint64_t chaos_rng_range(struct chaos_rng *r, uint64_t lo, uint64_t hi)
{
	return hi <= lo ? lo : lo + chaos_rng_next(r) % (hi - lo + 1);
}

/* ---- agent-side triggers: the engines' fault points of each phase ---- */

/* A point of one side's engine in phase ph, drawn from r, into p's trigger. */
struct point_choice {
	uint32_t point;           /* enum mig_fault_kind + 1 */
	int32_t stage, frame_type, stream, to;
	uint64_t nth_max;
	uint64_t nth_min;         /* 0: from 1 */
};

#define P_STEP(st, n)   { MIG_FAULT_DEVICE_STEP + 1, st, -1, -1, -1, n, 1 }
#define P_SEND(t, s, n) { MIG_FAULT_FRAME_SEND + 1, -1, t, s, -1, n, 1 }
#define P_RECV(t, s, n) { MIG_FAULT_FRAME_RECV + 1, -1, t, s, -1, n, 1 }
#define P_PHASE(to)     { MIG_FAULT_PHASE + 1, -1, -1, -1, to, 1, 1 }
/* the nth of lo..hi: a frame counted from the migration's start that
 * comes only after the switch to post-copy (see PC_NTH_LO) */
#define P_SEND_N(t, s, lo, hi) { MIG_FAULT_FRAME_SEND + 1, -1, t, s, -1, hi, lo }
#define P_RECV_N(t, s, lo, hi) { MIG_FAULT_FRAME_RECV + 1, -1, t, s, -1, hi, lo }

/*
 * Post-copy's points.  A plan counts its points from the migration's
 * start and has no phase of its own, so a point of the phase is one that
 * comes only in it: the phase changes into and out of it, RUNNING kind 2
 * (the 2nd RUNNING: every page placed), and PAGES frames past what round 0
 * can send on a stream.  The post-copy VM (CHAOS_PC_LAB, 16 MiB: 4096
 * pages) sends round 0 in 32 frames of 128 pages over two streams, about
 * 16 on each; the 24th to 44th PAGES frame of stream 1 (24th-32nd: early
 * in the phase) is pages a fault asked for, which stream 1 alone carries
 * in post-copy (the push goes on the others), unless stream 1 took three
 * quarters of round 0.
 * PAGE_REQUEST frames are no engine point on either side (the source's
 * request reader and the destination's fault thread use the transport
 * directly), so they are the relay's triggers only (net_points).
 */
#define PC_NTH_LO 24
#define PC_NTH_HI 44
#define PC_NTH_EARLY 32

static const struct point_choice src_points[][5] = {
	[MIG_PHASE_SETUP] = {
		P_SEND(MIG_FRAME_SETUP, 0, 1), P_RECV(MIG_FRAME_READY, 0, 1),
		P_STEP(MIG_STAGE_TRACK, 1), P_SEND(MIG_FRAME_SETUP, 0, 1),
		P_PHASE(MIG_PHASE_PRECOPY) },
	[MIG_PHASE_PRECOPY] = {
		P_SEND(MIG_FRAME_PAGES, -1, 30), P_SEND(MIG_FRAME_PAGES, 1, 10),
		P_SEND(MIG_FRAME_ROUND_END, 0, 1), P_SEND(MIG_FRAME_PAGES, 2, 5),
		P_PHASE(MIG_PHASE_STOP_COPY) },
	[MIG_PHASE_STOP_COPY] = {
		P_STEP(MIG_STAGE_QUIESCE, 2), P_STEP(MIG_STAGE_SAVE, 3),
		P_SEND(MIG_FRAME_DEVICE_DATA, -1, 2), P_RECV(MIG_FRAME_LOADED, 0, 1),
		P_PHASE(MIG_PHASE_COMMIT) },
	[MIG_PHASE_COMMIT] = {
		P_SEND(MIG_FRAME_COMMIT, 0, 1), P_RECV(MIG_FRAME_RUNNING, 0, 2),
		P_RECV(MIG_FRAME_RUNNING, 0, 1), P_PHASE(MIG_PHASE_DONE),
		P_SEND(MIG_FRAME_COMMIT, 0, 1) },
	[MIG_PHASE_POSTCOPY] = {
		P_PHASE(MIG_PHASE_POSTCOPY),
		P_SEND_N(MIG_FRAME_PAGES, 1, PC_NTH_LO, PC_NTH_HI),
		P_SEND_N(MIG_FRAME_PAGES, 1, PC_NTH_LO, PC_NTH_EARLY),
		P_RECV_N(MIG_FRAME_RUNNING, 0, 2, 2), P_PHASE(MIG_PHASE_DONE) },
};

static const struct point_choice dst_points[][5] = {
	[MIG_PHASE_SETUP] = {
		P_RECV(MIG_FRAME_SETUP, 0, 1), P_SEND(MIG_FRAME_READY, 0, 1),
		P_STEP(MIG_STAGE_RECEIVE, 1), P_SEND(MIG_FRAME_READY, 0, 1),
		P_PHASE(MIG_PHASE_PRECOPY) },
	[MIG_PHASE_PRECOPY] = {
		P_RECV(MIG_FRAME_PAGES, -1, 30), P_RECV(MIG_FRAME_PAGES, 2, 10),
		P_RECV(MIG_FRAME_ROUND_END, 0, 1), P_RECV(MIG_FRAME_PAGES, 1, 5),
		P_PHASE(MIG_PHASE_STOP_COPY) },
	[MIG_PHASE_STOP_COPY] = {
		P_RECV(MIG_FRAME_DEVICE_DATA, -1, 2), P_STEP(MIG_STAGE_LOAD, 3),
		P_SEND(MIG_FRAME_LOADED, 0, 1), P_STEP(MIG_STAGE_LOAD, 2),
		P_PHASE(MIG_PHASE_COMMIT) },
	[MIG_PHASE_COMMIT] = {
		P_RECV(MIG_FRAME_COMMIT, 0, 1), P_STEP(MIG_STAGE_START, 2),
		P_SEND(MIG_FRAME_RUNNING, 0, 1), P_PHASE(MIG_PHASE_DONE),
		P_SEND(MIG_FRAME_RUNNING, 0, 1) },
	[MIG_PHASE_POSTCOPY] = {
		P_PHASE(MIG_PHASE_POSTCOPY),
		P_RECV_N(MIG_FRAME_PAGES, 1, PC_NTH_LO, PC_NTH_HI),
		P_RECV_N(MIG_FRAME_PAGES, 1, PC_NTH_LO, PC_NTH_EARLY),
		P_SEND_N(MIG_FRAME_RUNNING, 0, 2, 2), P_PHASE(MIG_PHASE_DONE) },
};

/*
 * A libvirt migration's points, in the agents' tunnel (protocol.md §11):
 * its frames on the channels by ordinal.  Channel 1 is libvirt's RPC
 * connection, channel 2 QEMU's migration stream (its main channel), and
 * a channel's TUNNEL_END is its connection closed: QEMU's, once the
 * memory is all sent.  Setup is libvirt's talk, precopy QEMU's stream,
 * stop-copy the streams' ends.
 */
#define T_DATA MIG_FRAME_TUNNEL_DATA
#define T_END MIG_FRAME_TUNNEL_END

static const struct point_choice tunnel_src_points[][5] = {
	[MIG_PHASE_SETUP] = {
		P_SEND(T_DATA, 1, 6), P_RECV(T_DATA, 1, 6), P_SEND(T_DATA, 1, 2),
		P_RECV(T_DATA, 1, 2), P_SEND(T_DATA, 2, 1) },
	[MIG_PHASE_PRECOPY] = {
		P_SEND(T_DATA, 2, 40), P_SEND(T_DATA, -1, 60), P_SEND(T_DATA, 2, 10),
		P_SEND(T_DATA, 2, 80), P_RECV(T_DATA, -1, 8) },
	[MIG_PHASE_STOP_COPY] = {
		P_SEND(T_END, 2, 1), P_RECV(T_END, -1, 1), P_SEND(T_END, -1, 1),
		P_RECV(T_END, 2, 1), P_SEND(T_END, 2, 1) },
};

static const struct point_choice tunnel_dst_points[][5] = {
	[MIG_PHASE_SETUP] = {
		P_RECV(T_DATA, 1, 6), P_SEND(T_DATA, 1, 6), P_RECV(T_DATA, 1, 2),
		P_SEND(T_DATA, 1, 2), P_RECV(T_DATA, 2, 1) },
	[MIG_PHASE_PRECOPY] = {
		P_RECV(T_DATA, 2, 40), P_RECV(T_DATA, -1, 60), P_RECV(T_DATA, 2, 10),
		P_RECV(T_DATA, 2, 80), P_SEND(T_DATA, -1, 8) },
	[MIG_PHASE_STOP_COPY] = {
		P_RECV(T_END, 2, 1), P_SEND(T_END, -1, 1), P_RECV(T_END, -1, 1),
		P_SEND(T_END, 2, 1), P_RECV(T_END, 2, 1) },
};

static const char *ordinal(uint64_t n)
{
	return n % 100 >= 11 && n % 100 <= 13 ? "th" : n % 10 == 1 ? "st" : n % 10 == 2 ? "nd" :
	       n % 10 == 3 ? "rd" : "th";
}

/* p's trigger: a point of phase ph on that side, in words into f->trigger. */
static void pick_point(struct chaos_fault *f, struct chaos_rng *r, bool dst,
		       struct mig_fault_plan *p)
{
	const struct point_choice (*points)[5] = f->tunnel ? (dst ? tunnel_dst_points :
								  tunnel_src_points) :
						 (dst ? dst_points : src_points);
	const struct point_choice *c = &points[f->phase][chaos_rng_range(r, 0, 4)];
	const char *t = c->frame_type >= 0 ? mig_frame_type_to_string((uint16_t)c->frame_type) :
					     NULL;
	char stream[24];

	p->point = c->point;
	p->stage = c->stage;
	p->dev_class = -1;
	p->from = -1;
	p->to = c->to;
	p->frame_type = c->frame_type;
	p->stream = c->stream;
	p->nth = chaos_rng_range(r, c->nth_min ? c->nth_min : 1, c->nth_max);
	if (c->stream >= 0)
		snprintf(stream, sizeof(stream), "%s %d", f->tunnel ? "channel" : "stream",
			 c->stream);
	else
		snprintf(stream, sizeof(stream), "any %s", f->tunnel ? "channel" : "stream");
	switch (c->point - 1) {
	case MIG_FAULT_DEVICE_STEP:
		snprintf(f->trigger, sizeof(f->trigger), "%s: the %llu%s device step of stage %s",
			 dst ? "destination" : "source", (unsigned long long)p->nth,
			 ordinal(p->nth), mig_stage_to_string((enum mig_stage)c->stage));
		break;
	case MIG_FAULT_FRAME_SEND:
	case MIG_FAULT_FRAME_RECV:
		snprintf(f->trigger, sizeof(f->trigger), "%s: the %llu%s %s frame %s on %s",
			 dst ? "destination" : "source", (unsigned long long)p->nth,
			 ordinal(p->nth), t ? t : "?",
			 c->point - 1 == MIG_FAULT_FRAME_SEND ? "sent" : "received", stream);
		break;
	default:
		snprintf(f->trigger, sizeof(f->trigger), "%s: entering phase %s",
			 dst ? "destination" : "source",
			 mig_phase_to_string((enum mig_phase)c->to));
		if (f->phase == MIG_PHASE_POSTCOPY && c->to == MIG_PHASE_DONE)
			/* the last point of post-copy: every page placed */
			snprintf(f->trigger, sizeof(f->trigger), "%s: leaving phase postcopy "
				 "(every page placed)", dst ? "destination" : "source");
	}
}

static void plan_for(struct mig_fault_plan *p, const char *vm, uint32_t action)
{
	memset(p, 0, sizeof(*p));
	str_copy(p->vm, sizeof(p->vm), vm);
	p->action = action;
}

static const int errnos[] = { EIO, EBUSY, ENOMEM, EINVAL, ENODEV, ETIMEDOUT, EFAULT };

/* ---- process ---- */

static void agent_signal(struct chaos_fault *f, struct chaos_rng *r, const char *vm, bool dst,
			 uint32_t action)
{
	struct mig_fault_plan *p = dst ? &f->dst_plan : &f->src_plan;
	char where[sizeof(f->trigger)];

	plan_for(p, vm, action);
	pick_point(f, r, dst, p);
	if (action == MIG_FAULT_A_STOP) {
		/* mostly short; now and then past the switchover deadline (5 s and more) */
		p->ms = (uint32_t)(chaos_rng_range(r, 0, 3) ? chaos_rng_range(r, 20, 1500) :
				   chaos_rng_range(r, 1500, 7000));
		str_copy(where, sizeof(where), f->trigger);
		snprintf(f->trigger, sizeof(f->trigger), "%.150s, for %u ms", where, p->ms);
	}
	if (action == MIG_FAULT_A_KILL) {
		f->kills_src = !dst;
		f->kills_dst = dst;
	}
}

static void make_kill_src(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	agent_signal(f, r, vm, false, MIG_FAULT_A_KILL);
}

static void make_kill_dst(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	agent_signal(f, r, vm, true, MIG_FAULT_A_KILL);
}

static void make_stop_src(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	agent_signal(f, r, vm, false, MIG_FAULT_A_STOP);
}

static void make_stop_dst(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	agent_signal(f, r, vm, true, MIG_FAULT_A_STOP);
}

/* The runner acts when the source is seen in the fault's phase, after a
 * further delay (‰ of a short window), so its instant races the engine. */
static void observed(struct chaos_fault *f, struct chaos_rng *r, const char *what)
{
	f->delay_permille = (uint32_t)chaos_rng_range(r, 0, 1000);
	snprintf(f->trigger, sizeof(f->trigger), "%s once the source is in %s, %u‰ into the "
		 "next 20 ms", what, mig_phase_to_string(f->phase), f->delay_permille);
}

static void make_kill_start(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	(void)vm;
	f->start_signal = CHAOS_SIG_KILL;
	observed(f, r, "SIGKILL of the start process");
}

static void make_stop_start(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	char what[64];

	(void)vm;
	f->start_signal = CHAOS_SIG_STOP;
	f->stop_ms = (uint32_t)chaos_rng_range(r, 20, 3000);
	snprintf(what, sizeof(what), "SIGSTOP of the start process for %u ms", f->stop_ms);
	observed(f, r, what);
}

/* ---- device ---- */

static void step_error(struct chaos_fault *f, struct chaos_rng *r, const char *vm, bool dst)
{
	struct mig_fault_plan *p = dst ? &f->dst_plan : &f->src_plan;
	static const int stages[2][_MIG_PHASE_MAX][2] = {
		{ [MIG_PHASE_SETUP] = { MIG_STAGE_TRACK, MIG_STAGE_TRACK },
		  [MIG_PHASE_STOP_COPY] = { MIG_STAGE_QUIESCE, MIG_STAGE_SAVE } },
		{ [MIG_PHASE_SETUP] = { MIG_STAGE_RECEIVE, MIG_STAGE_RECEIVE },
		  [MIG_PHASE_STOP_COPY] = { MIG_STAGE_LOAD, MIG_STAGE_LOAD },
		  [MIG_PHASE_COMMIT] = { MIG_STAGE_START, MIG_STAGE_START } },
	};
	int stage = stages[dst][f->phase][chaos_rng_range(r, 0, 1)];

	plan_for(p, vm, MIG_FAULT_A_ERROR);
	if (!dst && f->phase == MIG_PHASE_STOP_COPY && chaos_rng_range(r, 0, 2) == 0) {
		/* the source fails once the destination has loaded all: the last
		 * instant a rollback can come, with the destination's copy whole */
		p->point = MIG_FAULT_FRAME_RECV + 1;
		p->frame_type = MIG_FRAME_LOADED;
		p->stream = 0;
		p->stage = p->dev_class = p->from = p->to = -1;
		p->nth = 1;
		p->err = errnos[chaos_rng_range(r, 0, ARRAY_SIZE(errnos) - 1)];
		snprintf(f->trigger, sizeof(f->trigger), "source: fails with %s as LOADED arrives",
			 strerrorname_np(p->err));
		return;
	}
	p->point = MIG_FAULT_DEVICE_STEP + 1;
	p->stage = stage;
	p->dev_class = p->from = p->to = p->frame_type = p->stream = -1;
	p->nth = chaos_rng_range(r, 1, stage == MIG_STAGE_SAVE || stage == MIG_STAGE_LOAD ? 3 : 1);
	p->err = errnos[chaos_rng_range(r, 0, ARRAY_SIZE(errnos) - 1)];
	snprintf(f->trigger, sizeof(f->trigger), "%s: the %llu%s device step of stage %s fails "
		 "with %s", dst ? "destination" : "source", (unsigned long long)p->nth,
		 ordinal(p->nth), mig_stage_to_string((enum mig_stage)stage),
		 strerrorname_np(p->err));
}

static void make_step_error_src(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	step_error(f, r, vm, false);
}

static void make_step_error_dst(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	step_error(f, r, vm, true);
}

static void make_lose_log(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	(void)r;
	(void)vm;
	str_copy(f->lab_extra, sizeof(f->lab_extra), "vfio-log=lose");
	str_copy(f->trigger, sizeof(f->trigger), "the source's VFIO device loses its DMA log "
		 "at its first report (EIO)");
}

static void make_overrun(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	(void)r;
	(void)vm;
	str_copy(f->lab_extra, sizeof(f->lab_extra), "vfio-overshoot=on");
	str_copy(f->trigger, sizeof(f->trigger), "the source's VFIO device sends 64 KiB of "
		 "pre-copy data beyond what it announced");
}

/* ---- operator and policy ---- */

static void make_cancel(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	(void)vm;
	f->cancel_op = chaos_rng_range(r, 0, 1);
	if (!f->cancel_op)
		f->start_signal = CHAOS_SIG_INT;
	observed(f, r, f->cancel_op ? "migratectl cancel" : "Ctrl-C of the start process");
}

static void make_timeout(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	(void)vm;
	f->timeout_ms = (uint32_t)chaos_rng_range(r, 1500, 4000);
	f->timeout_force = chaos_rng_range(r, 0, 2) == 0;
	snprintf(f->trigger, sizeof(f->trigger), "--timeout %u ms, action %s, on a link capped "
		 "so that the guest cannot converge", f->timeout_ms,
		 f->timeout_force ? "force" : "abort");
}

static void make_double_start(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	(void)r;
	(void)vm;
	f->double_start = true;
	str_copy(f->trigger, sizeof(f->trigger), "a second start of the same VM, at once, to "
		 "another agent");
}

static void make_destroy(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	(void)vm;
	f->destroy_src = chaos_rng_range(r, 0, 1);
	f->destroy_dst = !f->destroy_src;
	observed(f, r, f->destroy_src ? "vm destroy on the source" : "vm destroy on the "
		 "destination");
}

static void make_skew(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	bool dst = chaos_rng_range(r, 0, 1);
	struct mig_fault_plan *p = dst ? &f->dst_plan : &f->src_plan;
	int64_t ms = (int64_t)chaos_rng_range(r, 1, 5000);

	plan_for(p, vm, MIG_FAULT_A_SKEW);
	p->skew_ms = chaos_rng_range(r, 0, 1) ? ms : -ms;
	snprintf(f->trigger, sizeof(f->trigger), "the %s's clock %+lld ms off",
		 dst ? "destination" : "source", (long long)p->skew_ms);
}

/* ---- network: a relay in front of the destination's listener ---- */

struct net_choice {
	int16_t frame_type;       /* 0: a byte offset instead */
	int8_t stream;
	bool to_source;
	uint32_t nth_max;
	uint32_t nth_min;         /* 0: from 1 (a byte offset: from 0) */
};

static const struct net_choice net_points[][3] = {
	[MIG_PHASE_SETUP] = { { MIG_FRAME_STREAM_HELLO, -1, false, 1 },
			      { MIG_FRAME_SETUP, 0, false, 1 }, { MIG_FRAME_READY, 0, true, 1 } },
	[MIG_PHASE_PRECOPY] = { { MIG_FRAME_PAGES, 1, false, 60 },
				{ MIG_FRAME_PAGES, -1, false, 120 }, { 0, 1, false, 8 << 20 } },
	[MIG_PHASE_STOP_COPY] = { { MIG_FRAME_DEVICE_DATA, -1, false, 3 },
				  { MIG_FRAME_LOADED, 0, true, 1 },
				  { MIG_FRAME_ROUND_END, 0, false, 3 } },
	[MIG_PHASE_COMMIT] = { { MIG_FRAME_COMMIT, 0, false, 1 }, { MIG_FRAME_RUNNING, 0, true, 1 },
			       { MIG_FRAME_COMMIT, 0, false, 1 } },
	/* the destination's page requests on data stream 1, early or late in
	 * the phase, and the PAGES frames after the switch (see PC_NTH_LO) */
	[MIG_PHASE_POSTCOPY] = { { MIG_FRAME_PAGE_REQUEST, 1, true, 5, 1 },
				 { MIG_FRAME_PAGE_REQUEST, 1, true, 40, 6 },
				 { MIG_FRAME_PAGES, 1, false, PC_NTH_HI, PC_NTH_LO } },
};

/* The same in a libvirt migration's tunnel (see tunnel_src_points). */
static const struct net_choice tunnel_net_points[][3] = {
	[MIG_PHASE_SETUP] = { { MIG_FRAME_STREAM_HELLO, -1, false, 1 },
			      { T_DATA, 1, false, 4 }, { T_DATA, 1, true, 4 } },
	[MIG_PHASE_PRECOPY] = { { T_DATA, 2, false, 40 }, { T_DATA, -1, false, 80 },
				{ 0, 2, false, 2 << 20 } },
	[MIG_PHASE_STOP_COPY] = { { T_END, 2, false, 1 }, { T_END, -1, true, 1 },
				  { T_END, -1, false, 1 } },
};

static void net(struct chaos_fault *f, struct chaos_rng *r, const char *vm,
		enum chaos_net_fault nf, const char *what)
{
	struct mig_fault_plan *p = &f->dst_plan;
	const struct net_choice *c = &(f->tunnel ? tunnel_net_points :
				       net_points)[f->phase][chaos_rng_range(r, 0, 2)];
	const char *t = c->frame_type ? mig_frame_type_to_string((uint16_t)c->frame_type) : NULL;
	char stream[24];

	plan_for(p, vm, MIG_FAULT_A_NET);
	p->net_fault = nf;
	p->net_stream = c->stream;
	p->net_to_source = c->to_source;
	p->net_frame_type = (uint32_t)c->frame_type;
	p->seed = chaos_rng_next(r);
	if (c->frame_type)
		p->net_frame = chaos_rng_range(r, c->nth_min ? c->nth_min : 1, c->nth_max);
	else
		p->net_byte = chaos_rng_range(r, c->nth_min, c->nth_max);
	if (c->stream >= 0)
		snprintf(stream, sizeof(stream), "%s %d", f->tunnel ? "channel" : "stream",
			 c->stream);
	else
		snprintf(stream, sizeof(stream), "any %s", f->tunnel ? "channel" : "stream");
	if (t)
		snprintf(f->trigger, sizeof(f->trigger), "%s at the %llu%s %s frame %s on %s", what,
			 (unsigned long long)p->net_frame, ordinal(p->net_frame), t,
			 c->to_source ? "to the source" : "to the destination", stream);
	else
		snprintf(f->trigger, sizeof(f->trigger), "%s at byte %llu %s on %s", what,
			 (unsigned long long)p->net_byte,
			 c->to_source ? "to the source" : "to the destination", stream);
}

static void make_net_reset(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	net(f, r, vm, CHAOS_NET_RESET, "connection reset");
}

static void make_net_stall(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	/* mostly short; now and then past the switchover deadline */
	uint32_t ms = (uint32_t)(chaos_rng_range(r, 0, 4) ? chaos_rng_range(r, 20, 2000) :
				 chaos_rng_range(r, 2000, 8000));
	char what[48];

	snprintf(what, sizeof(what), "blackhole for %u ms", ms);
	net(f, r, vm, CHAOS_NET_STALL, what);
	f->dst_plan.ms = ms;
}

static void make_net_delay(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	uint32_t ms = (uint32_t)chaos_rng_range(r, 1, 40), j = (uint32_t)chaos_rng_range(r, 0, ms);
	char what[64];

	snprintf(what, sizeof(what), "delay %u ms ± %u ms from then on", ms, j);
	net(f, r, vm, CHAOS_NET_DELAY, what);
	f->dst_plan.ms = ms;
	f->dst_plan.net_jitter_ms = j;
}

static void make_net_bandwidth(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	/* mostly above what the guest dirties (it converges, slower); now and
	 * then below it (it cannot, and gives up at its timeout) */
	uint64_t rate = (chaos_rng_range(r, 0, 5) ? chaos_rng_range(r, 32, 256) :
			 chaos_rng_range(r, 4, 31)) << 20;
	char what[64];

	snprintf(what, sizeof(what), "bandwidth squeezed to %llu MiB/s",
		 (unsigned long long)(rate >> 20));
	net(f, r, vm, CHAOS_NET_BANDWIDTH, what);
	f->dst_plan.net_rate = rate;
}

static void make_net_corrupt(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	net(f, r, vm, CHAOS_NET_CORRUPT, "one byte flipped");
}

static void make_net_truncate(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	net(f, r, vm, CHAOS_NET_TRUNCATE, "frame truncated");
}

static void make_net_duplicate(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	net(f, r, vm, CHAOS_NET_DUPLICATE, "frame duplicated");
}

static void make_net_reorder(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	net(f, r, vm, CHAOS_NET_REORDER, "frame held behind another stream's");
	f->dst_plan.ms = (uint32_t)chaos_rng_range(r, 5, 200);
}

static void make_net_partition(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	bool data = chaos_rng_range(r, 0, 1);
	uint32_t ms = (uint32_t)chaos_rng_range(r, 50, 6000);
	char what[80];

	snprintf(what, sizeof(what), "%s partitioned for %u ms", data ? "the data streams" :
		 "the control stream", ms);
	net(f, r, vm, CHAOS_NET_PARTITION, what);
	f->dst_plan.net_data = data;
	f->dst_plan.ms = ms;
}

static void make_net_refuse(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	plan_for(&f->dst_plan, vm, MIG_FAULT_A_NET);
	f->dst_plan.net_fault = CHAOS_NET_REFUSE;
	f->dst_plan.net_stream = -1;
	f->dst_plan.net_conn = (uint32_t)chaos_rng_range(r, 1, 3);
	f->dst_plan.seed = chaos_rng_next(r);
	snprintf(f->trigger, sizeof(f->trigger), "the destination refuses connections from "
		 "the %u%s on", f->dst_plan.net_conn, ordinal(f->dst_plan.net_conn));
}

/* ---- network: the veth link of an agent in its namespace ---- */

static void link_fault(struct chaos_fault *f, struct chaos_rng *r, enum chaos_link_fault lf)
{
	char what[96];

	f->link = lf;
	f->link_dst = chaos_rng_range(r, 0, 2) != 0;
	f->link_ms = (uint32_t)(chaos_rng_range(r, 0, 4) ? chaos_rng_range(r, 20, 1500) :
				chaos_rng_range(r, 1500, 7000));
	if (lf == CHAOS_LINK_RATE) {
		f->link_arg = (chaos_rng_range(r, 0, 5) ? chaos_rng_range(r, 32, 256) :
			       chaos_rng_range(r, 4, 31)) << 20;
		snprintf(what, sizeof(what), "the %s's link shaped to %llu MiB/s (tbf) for %u ms",
			 f->link_dst ? "destination" : "source",
			 (unsigned long long)(f->link_arg >> 20), f->link_ms);
	} else {
		snprintf(what, sizeof(what), "the %s's link %s for %u ms",
			 f->link_dst ? "destination" : "source",
			 lf == CHAOS_LINK_DOWN ? "down" : lf == CHAOS_LINK_DROP ?
			 "blackholed (iptables DROP)" : "resetting every TCP segment (iptables "
			 "REJECT)", f->link_ms);
	}
	observed(f, r, what);
}

static void make_link_down(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	(void)vm;
	link_fault(f, r, CHAOS_LINK_DOWN);
}

static void make_link_rate(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	(void)vm;
	link_fault(f, r, CHAOS_LINK_RATE);
}

static void make_link_drop(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	(void)vm;
	link_fault(f, r, CHAOS_LINK_DROP);
}

static void make_link_reset(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	(void)vm;
	link_fault(f, r, CHAOS_LINK_RESET);
}

/* ---- hostile clients, while the migration runs ---- */

static void hostile(struct chaos_fault *f, struct chaos_rng *r, unsigned kind, const char *what)
{
	char w[96];

	f->hostile = kind;
	f->hostile_mig_port = chaos_rng_range(r, 0, 1);
	snprintf(w, sizeof(w), "%s at the %s", what, f->hostile_mig_port ?
		 "destination's migration listener" : "source agent's control port");
	observed(f, r, w);
}

static void make_hostile_silent(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	(void)vm;
	hostile(f, r, 1, "silent connections");
}

static void make_hostile_half(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	(void)vm;
	hostile(f, r, 2, "half a frame");
}

static void make_hostile_flood(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	(void)vm;
	hostile(f, r, 3, "a flood of connections");
}

static void make_hostile_idle(struct chaos_fault *f, struct chaos_rng *r, const char *vm)
{
	(void)vm;
	hostile(f, r, 4, "idle connections");
}

#define PH(x) CHAOS_PH(MIG_PHASE_##x)
#define NO_PRECOPY (PH(SETUP) | PH(STOP_COPY) | PH(COMMIT))
/* every phase, post-copy's too: the faults that break or freeze the link,
 * kill or freeze a process, or are an operator's (docs/chaos.md) */
#define ANY CHAOS_PH_ANY

const struct chaos_kind chaos_kinds[] = {
	{ "reset", CHAOS_NETWORK, ANY, "a migration stream reset (RST)", make_net_reset },
	{ "stall", CHAOS_NETWORK, ANY, "a stream blackholed for a while", make_net_stall },
	{ "delay", CHAOS_NETWORK, ANY, "delay and jitter on a stream", make_net_delay },
	{ "bandwidth", CHAOS_NETWORK, CHAOS_PH_ALL, "a stream's bandwidth squeezed",
	  make_net_bandwidth },
	{ "corrupt", CHAOS_NETWORK, CHAOS_PH_ALL, "one byte flipped", make_net_corrupt },
	{ "truncate", CHAOS_NETWORK, CHAOS_PH_ALL, "a frame cut short, then the stream closed",
	  make_net_truncate },
	{ "duplicate", CHAOS_NETWORK, CHAOS_PH_ALL, "a frame sent twice", make_net_duplicate },
	{ "reorder", CHAOS_NETWORK, CHAOS_PH_ALL, "a frame held behind another stream's",
	  make_net_reorder },
	{ "partition", CHAOS_NETWORK, ANY, "control cut off from data, or data from "
	  "control", make_net_partition },
	{ "refuse", CHAOS_NETWORK, PH(SETUP), "new connections refused", make_net_refuse },
	{ "link-down", CHAOS_NETWORK, ANY, "an agent's link down for a while (needs "
	  "namespaces)", make_link_down },
	{ "link-rate", CHAOS_NETWORK, CHAOS_PH_ALL, "an agent's link shaped by tbf (needs "
	  "namespaces)", make_link_rate },
	{ "link-drop", CHAOS_NETWORK, ANY, "an agent's TCP blackholed by iptables "
	  "(needs namespaces)", make_link_drop },
	{ "link-reset", CHAOS_NETWORK, ANY, "an agent's TCP reset by iptables (needs "
	  "namespaces)", make_link_reset },
	{ "kill-src", CHAOS_PROCESS, ANY, "SIGKILL of the source agent", make_kill_src },
	{ "kill-dst", CHAOS_PROCESS, ANY, "SIGKILL of the destination agent",
	  make_kill_dst },
	{ "stop-src", CHAOS_PROCESS, ANY, "SIGSTOP/SIGCONT of the source agent",
	  make_stop_src },
	{ "stop-dst", CHAOS_PROCESS, ANY, "SIGSTOP/SIGCONT of the destination agent",
	  make_stop_dst },
	{ "kill-start", CHAOS_PROCESS, ANY, "SIGKILL of the orchestrating start process",
	  make_kill_start },
	{ "stop-start", CHAOS_PROCESS, ANY, "SIGSTOP/SIGCONT of the start process",
	  make_stop_start },
	/* a source's steps after the commit point (RELEASE) are bookkeeping:
	 * nothing may fail there, and they take no fault */
	{ "step-error-src", CHAOS_DEVICE, PH(SETUP) | PH(STOP_COPY), "a source device step "
	  "fails with an errno", make_step_error_src },
	{ "step-error-dst", CHAOS_DEVICE, NO_PRECOPY, "a destination device step fails with an "
	  "errno", make_step_error_dst },
	{ "lose-log", CHAOS_DEVICE, PH(PRECOPY), "a device loses its dirty log", make_lose_log },
	{ "overrun", CHAOS_DEVICE, PH(PRECOPY), "a device's pre-copy data overruns its "
	  "announced size", make_overrun },
	{ "cancel", CHAOS_OPERATOR, ANY, "a cancel at an instant (racing commit "
	  "included)", make_cancel },
	{ "timeout", CHAOS_OPERATOR, PH(PRECOPY), "a --timeout firing", make_timeout },
	{ "double-start", CHAOS_OPERATOR, PH(SETUP), "two migrations of the same VM at once",
	  make_double_start },
	{ "destroy", CHAOS_OPERATOR, ANY, "a vm destroy during the migration",
	  make_destroy },
	{ "skew", CHAOS_OPERATOR, PH(SETUP), "clock skew between the agents", make_skew },
	{ "hostile-silent", CHAOS_HOSTILE, PH(SETUP) | PH(PRECOPY), "connections that send nothing",
	  make_hostile_silent },
	{ "hostile-half", CHAOS_HOSTILE, PH(SETUP) | PH(PRECOPY), "connections that send half a "
	  "frame",
	  make_hostile_half },
	{ "hostile-flood", CHAOS_HOSTILE, PH(SETUP) | PH(PRECOPY), "thousands of connections",
	  make_hostile_flood },
	{ "hostile-idle", CHAOS_HOSTILE, PH(SETUP) | PH(PRECOPY), "idle connections held open",
	  make_hostile_idle },
};
const unsigned chaos_nr_kinds = ARRAY_SIZE(chaos_kinds);
_Static_assert(ARRAY_SIZE(chaos_kinds) <= 64, "a kind mask is 64 bits");

int chaos_faults_parse(const char *list, uint64_t *ret_mask, struct mig_error *err)
{
	char buf[512], *save = NULL;
	uint64_t mask = 0;

	if (strlen(list) >= sizeof(buf))
		return mig_error_set(err, -EINVAL, "--faults: the list is too long");
	str_copy(buf, sizeof(buf), list);
	for (char *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
		bool found = false;

		for (unsigned i = 0; i < chaos_nr_kinds; i++)
			if (!strcmp(w, "all") || !strcmp(w, chaos_kinds[i].name) ||
			    !strcmp(w, chaos_class_name(chaos_kinds[i].cls))) {
				mask |= 1ULL << i;
				found = true;
			}
		if (!found)
			return mig_error_set(err, -EINVAL, "--faults: no fault or class '%.64s' "
					     "(classes: network, process, device, operator, "
					     "hostile; or all; "
					     "`migratectl chaos --list` shows the faults)", w);
	}
	if (!mask)
		return mig_error_set(err, -EINVAL, "--faults: the list names no fault");
	*ret_mask = mask;
	return 0;
}

uint64_t chaos_cluster_mask(uint64_t mask, bool local)
{
	for (unsigned k = 0; k < chaos_nr_kinds && !local; k++)
		if (!strcmp(chaos_kinds[k].name, "kill-src") ||
		    !strcmp(chaos_kinds[k].name, "kill-dst"))
			mask &= ~(1ULL << k);
	return mask;
}

/* The kinds a libvirt domain's migration takes: the tunnel's network
 * faults (its relay), the agents' and the start's deaths and freezes, and a
 * cancel.  Not the links (no namespaces of the runner's), nor what acts on
 * migratectl's own engine, devices or VMs. */
static const struct {
	const char *name;
	bool agents;              /* a plan the agents carry out (--chaos) */
} lv_kinds[] = {
	{ "reset", true }, { "stall", true }, { "delay", true }, { "bandwidth", true },
	{ "corrupt", true }, { "truncate", true }, { "duplicate", true }, { "reorder", true },
	{ "partition", true }, { "refuse", true }, { "kill-src", true }, { "kill-dst", true },
	{ "stop-src", true }, { "stop-dst", true }, { "kill-start", false },
	{ "stop-start", false }, { "cancel", false },
};

uint64_t chaos_lv_mask(uint64_t mask, bool agent_faults)
{
	uint64_t lv = 0;

	for (unsigned k = 0; k < chaos_nr_kinds; k++)
		for (unsigned i = 0; i < ARRAY_SIZE(lv_kinds); i++)
			if (!strcmp(chaos_kinds[k].name, lv_kinds[i].name) &&
			    (agent_faults || !lv_kinds[i].agents))
				lv |= 1ULL << k;
	return mask & lv;
}

/* A run aimed at post-copy: the start options that make the phase last
 * (a bandwidth cap under which CHAOS_PC_LAB cannot converge, post-copy
 * after round 0), and a short --recover-window, 1-3 s: the source cannot
 * tell a frozen or cut-off destination from a broken link, and waits for
 * it that long (10 min by default; a refused connection ends it at once).  The fault's outage (a link down, a
 * stream blackholed, an agent stopped) outlasts it now and then; one that
 * ends in the window's last second may too (CHAOS_PC_RETRY_MS). */
static void postcopy_run(struct chaos_fault *f, struct chaos_rng *r)
{
	size_t n;

	if (f->link)
		f->outage_ms = f->link_ms;
	else if (f->dst_plan.action == MIG_FAULT_A_NET &&
		 (f->dst_plan.net_fault == CHAOS_NET_STALL ||
		  f->dst_plan.net_fault == CHAOS_NET_PARTITION))
		f->outage_ms = f->dst_plan.ms;
	else if (f->src_plan.action == MIG_FAULT_A_STOP || f->dst_plan.action == MIG_FAULT_A_STOP)
		f->outage_ms = f->src_plan.ms + f->dst_plan.ms;
	f->recover_ms = (uint32_t)chaos_rng_range(r, 1, 3) * 1000;
	f->may_split = f->outage_ms && f->outage_ms + CHAOS_PC_RETRY_MS > f->recover_ms;
	snprintf(f->start_extra, sizeof(f->start_extra), "--converge postcopy --max-bandwidth %s "
		 "--recover-window %us", CHAOS_PC_BANDWIDTH, f->recover_ms / 1000);
	n = strlen(f->trigger);
	snprintf(f->trigger + n, sizeof(f->trigger) - n, "; --recover-window %u s",
		 f->recover_ms / 1000);
}

uint64_t chaos_phase_mask(uint64_t mask, unsigned phases)
{
	for (unsigned k = 0; k < chaos_nr_kinds; k++)
		if (!(chaos_kinds[k].phases & (phases ? phases : CHAOS_PH_ANY)))
			mask &= ~(1ULL << k);
	return mask;
}

static void fault_make(uint64_t seed, uint64_t run, uint64_t mask, unsigned phase_mask,
		       bool tunnel, const char *vm, struct chaos_fault *f)
{
	unsigned kinds[64], n = 0, phases[_MIG_PHASE_MAX], np = 0;
	struct chaos_rng r = { seed ^ (run * 0xd1342543de82ef95ULL) };
	const struct chaos_kind *k;

	if (!phase_mask)
		phase_mask = tunnel ? CHAOS_LV_PHASES : CHAOS_PH_ANY;
	mask = chaos_phase_mask(mask, phase_mask);
	for (unsigned i = 0; i < chaos_nr_kinds; i++)
		if (mask & (1ULL << i))
			kinds[n++] = i;
	memset(f, 0, sizeof(*f));
	if (!n)
		return;
	f->kind = kinds[run % n];
	k = &chaos_kinds[f->kind];
	/* pre-copy's arc in its order, then post-copy */
	for (unsigned p = MIG_PHASE_SETUP; p < _MIG_PHASE_MAX; p++)
		if (p != MIG_PHASE_DONE && p != MIG_PHASE_ROLLBACK &&
		    (k->phases & phase_mask & CHAOS_PH(p)))
			phases[np++] = p;
	if (!np)
		phases[np++] = MIG_PHASE_SETUP;
	f->phase = (enum mig_phase)phases[(run / n) % np];
	f->tunnel = tunnel;
	chaos_rng_next(&r);
	k->make(f, &r, vm);
	if (f->phase == MIG_PHASE_POSTCOPY)
		postcopy_run(f, &r);
}

void chaos_fault_make(uint64_t seed, uint64_t run, uint64_t mask, const char *vm,
		      struct chaos_fault *f)
{
	fault_make(seed, run, mask, 0, false, vm, f);
}

void chaos_fault_make_in(uint64_t seed, uint64_t run, uint64_t mask, unsigned phases,
			 const char *vm, struct chaos_fault *f)
{
	fault_make(seed, run, mask, phases, false, vm, f);
}

int chaos_phases_parse(const char *list, unsigned *ret, struct mig_error *err)
{
	char buf[128], *save = NULL;
	unsigned phases = 0;

	if (strlen(list) >= sizeof(buf))
		return mig_error_set(err, -EINVAL, "--phases: the list is too long");
	str_copy(buf, sizeof(buf), list);
	for (char *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
		unsigned p;

		for (p = MIG_PHASE_SETUP; p < _MIG_PHASE_MAX; p++)
			if ((CHAOS_PH(p) & CHAOS_PH_ANY) &&
			    !strcmp(w, mig_phase_to_string((enum mig_phase)p)))
				break;
		if (p == _MIG_PHASE_MAX)
			return mig_error_set(err, -EINVAL, "--phases: no phase '%.32s' (setup, "
					     "precopy, stop_copy, commit, postcopy)", w);
		phases |= CHAOS_PH(p);
	}
	if (!phases)
		return mig_error_set(err, -EINVAL, "--phases: the list names no phase");
	*ret = phases;
	return 0;
}

void chaos_lv_fault_make(uint64_t seed, uint64_t run, uint64_t mask, const char *domain,
			 struct chaos_fault *f)
{
	fault_make(seed, run, chaos_lv_mask(mask, true), 0, true, domain, f);
}
