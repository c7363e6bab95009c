// SPDX-License-Identifier: MIT
/*
 * The channel I/O class and its sim device (ccw.h).  The sim's "guest" is a
 * thread: while the class lets it, it starts a channel program whenever
 * the subchannel is idle and takes the interrupts in the order they were
 * raised, checking that none is missing; the device ends each program
 * after a short time (every Nth runs long) with an interrupt.
 *
 * Quiesce: DRAINING refuses new STARTs at once; DRAINING -> QUIESCED waits
 * for the program in flight up to WAIT_MS, then halts it (the halt ends
 * with its own interrupt) and waits up to WAIT_MS again, then clears it
 * (a clear always ends the program).  The interrupts not yet delivered are
 * part of the saved state and are delivered on the destination.
 */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ccw.h"
#include "util.h"

#define WAIT_MS 20
#define PROG_NS 200000ULL          /* a program: 0.2 ms */
#define LONG_PROG_NS 5000000000ULL /* a long one: 5 s, longer than any wait */
#define STATE_MAGIC 0x31574343U    /* "CCW1" */

static struct ccw_sim *ccw_of(struct mig_device *d)
{
	return container_of(d, struct ccw_sim, dev);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* An interrupt: numbered in the order raised, kept until delivered. */
static void raise_irq(struct ccw_sim *c)
{
	c->raised++;
	if (c->nr_irb < CCW_IRB_MAX)
		c->irb[c->nr_irb++] = c->raised;
	else if (!c->errors++)
		snprintf(c->error_msg, sizeof(c->error_msg), "interrupt %llu had no room",
			 (unsigned long long)c->raised);
	c->fsm = CCW_FSM_IDLE;
	pthread_cond_broadcast(&c->changed);
}

/* The device: end the program in flight when its time has come. */
static void device_locked(struct ccw_sim *c)
{
	if (c->fsm == CCW_FSM_CP_PENDING && now_ns() >= c->prog_end_ns)
		raise_irq(c);
}

/* The guest: take interrupts in order, start the next program. */
static void guest_locked(struct ccw_sim *c)
{
	while (c->deliver && c->nr_irb) {
		uint64_t n = c->irb[0];

		if (n != c->delivered + 1 && !c->errors++)
			snprintf(c->error_msg, sizeof(c->error_msg), "interrupt %llu came after %llu",
				 (unsigned long long)n, (unsigned long long)c->delivered);
		c->delivered = n;
		memmove(c->irb, c->irb + 1, --c->nr_irb * sizeof(c->irb[0]));
	}
	if (c->accept_start && c->fsm == CCW_FSM_IDLE) {
		/* START: set up (CP_PROCESSING), then running (CP_PENDING) */
		c->fsm = CCW_FSM_CP_PROCESSING;
		c->started++;
		c->prog_end_ns = now_ns() + (c->long_every && c->started % c->long_every == 0 ?
					     LONG_PROG_NS : PROG_NS);
		c->fsm = CCW_FSM_CP_PENDING;
	}
}

void ccw_sim_tick(struct ccw_sim *c)
{
	pthread_mutex_lock(&c->lock);
	device_locked(c);
	guest_locked(c);
	pthread_mutex_unlock(&c->lock);
}

static void *ccw_main(void *arg)
{
	struct ccw_sim *c = arg;
	uint64_t step = 1000000000ULL / (c->rate ? c->rate : 1000);

	pthread_setname_np(pthread_self(), "ccw-sim");
	pthread_mutex_lock(&c->lock);
	while (!c->quit) {
		struct timespec ts;

		device_locked(c);
		guest_locked(c);
		ts = mig_timespec_after(CLOCK_REALTIME, step);
		pthread_cond_timedwait(&c->changed, &c->lock, &ts);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* ---- the class ---- */

/* Wait for the subchannel to go idle, up to ms; true once it is. */
static bool wait_idle(struct ccw_sim *c, unsigned ms)
{
	uint64_t end = now_ns() + (uint64_t)ms * 1000000ULL;

	for (;;) {
		uint64_t now, until;
		struct timespec ts;

		device_locked(c);
		now = now_ns();
		if (c->fsm == CCW_FSM_IDLE || c->fsm == CCW_FSM_NOT_OPER || now >= end)
			return c->fsm != CCW_FSM_CP_PENDING && c->fsm != CCW_FSM_CP_PROCESSING;
		/* sleep until the program is due to end, or the deadline */
		until = c->prog_end_ns > now && c->prog_end_ns < end ? c->prog_end_ns : end;
		ts = (struct timespec){ (time_t)((until - now) / 1000000000ULL),
					(long)((until - now) % 1000000000ULL) };
		pthread_mutex_unlock(&c->lock);
		nanosleep(&ts, NULL);
		pthread_mutex_lock(&c->lock);
	}
}

static int quiesce(struct ccw_sim *c, struct mig_error *err)
{
	int r = 0;

	pthread_mutex_lock(&c->lock);
	c->accept_start = false;
	if (!wait_idle(c, WAIT_MS)) {
		/* HALT: the program stops, with an interrupt of its own */
		c->halts++;
		if (!c->halt_stuck)
			c->prog_end_ns = now_ns() + PROG_NS;
		if (!wait_idle(c, WAIT_MS)) {
			/* CLEAR: ends it now, with an interrupt */
			c->clears++;
			raise_irq(c);
		}
	}
	if (c->fsm != CCW_FSM_IDLE)
		r = mig_error_set(err, -EIO, "ccw %u: the subchannel is %s after halt and clear",
				  c->dev.id, c->fsm == CCW_FSM_NOT_OPER ? "not operational" : "busy");
	c->deliver = false;
	pthread_mutex_unlock(&c->lock);
	return r;
}

static int step(struct mig_device *d, int to, struct mig_error *err)
{
	struct ccw_sim *c = ccw_of(d);

	switch (to) {
	case CCW_DRAINING:
		pthread_mutex_lock(&c->lock);
		c->accept_start = false;
		pthread_mutex_unlock(&c->lock);
		return 0;
	case CCW_QUIESCED:
		return quiesce(c, err);
	case CCW_RUNNING:
		pthread_mutex_lock(&c->lock);
		c->accept_start = c->deliver = true;
		pthread_cond_broadcast(&c->changed);
		pthread_mutex_unlock(&c->lock);
		return 0;
	default:
		return 0;
	}
}

struct ccw_saved {
	uint32_t magic, nr_irb;
	uint64_t started, raised, delivered;
	uint64_t irb[CCW_IRB_MAX];
};

/* Between the host's order and the little-endian the state travels in. */
static void saved_le(struct ccw_saved *s)
{
	s->magic = htole32(s->magic);
	s->nr_irb = htole32(s->nr_irb);
	s->started = htole64(s->started);
	s->raised = htole64(s->raised);
	s->delivered = htole64(s->delivered);
	for (unsigned i = 0; i < CCW_IRB_MAX; i++)
		s->irb[i] = htole64(s->irb[i]);
}

static int save(struct mig_device *d, struct mig_writer *w, struct mig_error *err)
{
	struct ccw_sim *c = ccw_of(d);
	struct ccw_saved s = { .magic = STATE_MAGIC };

	pthread_mutex_lock(&c->lock);
	s.nr_irb = c->nr_irb;
	s.started = c->started;
	s.raised = c->raised;
	s.delivered = c->delivered;
	memcpy(s.irb, c->irb, sizeof(s.irb));
	pthread_mutex_unlock(&c->lock);
	saved_le(&s);
	return w->write(w, &s, sizeof(s), err);
}

static int load(struct mig_device *d, struct mig_reader *r, struct mig_error *err)
{
	struct ccw_sim *c = ccw_of(d);
	struct ccw_saved s;

	if (r->remaining(r) != sizeof(s))
		return mig_error_set(err, -EBADMSG, "state of %llu bytes, %zu expected",
				     (unsigned long long)r->remaining(r), sizeof(s));
	if (r->read(r, &s, sizeof(s), err) < 0)
		return -EIO;
	saved_le(&s);
	if (s.magic != STATE_MAGIC || s.nr_irb > CCW_IRB_MAX ||
	    s.delivered + s.nr_irb != s.raised)
		return mig_error_set(err, -EBADMSG, "state: bad magic, or %u interrupts waiting "
				     "between %llu delivered and %llu raised", s.nr_irb,
				     (unsigned long long)s.delivered, (unsigned long long)s.raised);
	pthread_mutex_lock(&c->lock);
	c->started = s.started;
	c->raised = s.raised;
	c->delivered = s.delivered;
	c->nr_irb = s.nr_irb;
	memcpy(c->irb, s.irb, sizeof(c->irb));
	c->fsm = CCW_FSM_IDLE;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

static const char *const names[CCW_N] = {
	"new", "restored", "running", "draining", "quiesced", "released",
};
#define A(a, b) [(a) * CCW_N + (b)] = true
static const bool arcs[CCW_N * CCW_N] = {
	A(CCW_RUNNING, CCW_DRAINING), A(CCW_DRAINING, CCW_QUIESCED), A(CCW_DRAINING, CCW_RUNNING),
	A(CCW_QUIESCED, CCW_RUNNING), A(CCW_QUIESCED, CCW_RELEASED), A(CCW_NEW, CCW_RESTORED),
	A(CCW_RESTORED, CCW_RUNNING), A(CCW_NEW, CCW_RELEASED), A(CCW_RESTORED, CCW_RELEASED),
};
#undef A
static const struct mig_stage_step steps[] = {
	{ MIG_STAGE_QUIESCE, 0, CCW_DRAINING },   /* no new I/O, before the vCPUs stop */
	{ MIG_STAGE_QUIESCE, 20, CCW_QUIESCED },  /* in flight waited out, halted or cleared */
	{ MIG_STAGE_RELEASE, 0, CCW_RELEASED },
	{ MIG_STAGE_ROLLBACK, 20, CCW_RUNNING },
	{ MIG_STAGE_LOAD, 5, CCW_RESTORED },
	{ MIG_STAGE_START, 20, CCW_RUNNING },
	{ MIG_STAGE_DISCARD, 0, CCW_RELEASED },
};
static const struct mig_device_ops ops = { .step = step, .save = save, .load = load };

const struct mig_device_class ccw_class = {
	.id = MIG_DEV_CCW, .name = "ccw", .version = 1,
	.no_postcopy = "its channel programs move data to guest RAM by DMA, which cannot "
		       "wait for a missing page",
	.nr_states = CCW_N, .state_names = names, .arcs = arcs,
	.steps = steps, .nr_steps = ARRAY_SIZE(steps),
	.load_state = CCW_NEW, .fail_state = -1, .ops = &ops,
};

void ccw_sim_init(struct ccw_sim *c, unsigned id, uint32_t rate, uint64_t long_every, bool source)
{
	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->changed, NULL);
	c->rate = rate;
	c->long_every = long_every;
	c->fsm = CCW_FSM_IDLE;
	mig_device_init(&c->dev, &ccw_class, id, source ? CCW_RUNNING : CCW_NEW);
}

int ccw_sim_start(struct ccw_sim *c)
{
	pthread_mutex_lock(&c->lock);
	if (c->dev.state == CCW_RUNNING)
		c->accept_start = c->deliver = true;
	pthread_mutex_unlock(&c->lock);
	if (pthread_create(&c->thread, NULL, ccw_main, c) != 0)
		return -EAGAIN;
	c->thread_on = true;
	return 0;
}

void ccw_sim_fini(struct ccw_sim *c)
{
	if (c->thread_on) {
		pthread_mutex_lock(&c->lock);
		c->quit = true;
		pthread_cond_broadcast(&c->changed);
		pthread_mutex_unlock(&c->lock);
		pthread_join(c->thread, NULL);
		c->thread_on = false;
	}
}
