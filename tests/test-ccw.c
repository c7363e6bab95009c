// SPDX-License-Identifier: MIT
/*
 * The channel I/O class on its sim: a quiesce that waits out, halts or
 * clears the program in flight within its deadline, so the subchannel is
 * saved idle, and no interrupt is lost across a save and a load: the
 * destination delivers the ones still waiting, in order, after the ones
 * the source delivered.
 */
#include <criterion/criterion.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <migrate/device.h>

#include "ccw/ccw.h"

static struct mig_buf saved;

static struct mig_reader *saved_state(void *arg, struct mig_device *d)
{
	static struct mig_mem_reader rd;

	(void)arg; (void)d;
	mig_mem_reader_init(&rd, saved.data, saved.len);
	return &rd.r;
}

static int walk(struct ccw_sim *c, enum mig_stage stage, struct mig_error *err)
{
	struct mig_device *d = &c->dev;
	struct mig_walk w = { .state_of = saved_state };

	return mig_devices_walk(&d, 1, stage, &w, err);
}

static uint64_t ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	/* signed: the nanoseconds may be fewer than t0's */
	return (uint64_t)(((int64_t)(t.tv_sec - t0->tv_sec) * 1000000000 +
			   (t.tv_nsec - t0->tv_nsec)) / 1000000);
}

/* Run the source a while, quiesce it, save it, load the state into a
 * destination, start it, and let it deliver what waited. */
static void move(uint64_t long_every, bool halt_stuck, uint64_t *halts, uint64_t *clears)
{
	struct ccw_sim s, d;
	struct mig_error err = { 0 };
	struct mig_buf_writer bw;
	struct timespec t0;

	ccw_sim_init(&s, 0, 2000, long_every, true);
	ccw_sim_init(&d, 0, 2000, 0, false);
	s.halt_stuck = halt_stuck;
	cr_assert_eq(ccw_sim_start(&s), 0);
	cr_assert_eq(ccw_sim_start(&d), 0);
	/* with every program long, one is in flight; else many have run */
	uint64_t want = long_every == 1 ? 1 : 20;

	for (int i = 0; i < 500 && __atomic_load_n(&s.started, __ATOMIC_RELAXED) < want; i++)
		usleep(10000);
	cr_assert_geq(s.started, want, "the guest started programs");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(walk(&s, MIG_STAGE_QUIESCE, &err), 0, "%s", err.msg);
	cr_assert_lt(ms_since(&t0), 1000, "the quiesce kept to its deadlines");
	cr_assert_eq(s.fsm, CCW_FSM_IDLE, "saved idle");
	cr_assert_eq(s.delivered + s.nr_irb, s.raised, "every interrupt delivered or waiting");
	saved.len = 0;
	mig_buf_writer_init(&bw, &saved);
	cr_assert_eq(ccw_class.ops->save(&s.dev, &bw.w, &err), 0, "%s", err.msg);
	/* little-endian whatever the host: the magic, then nr_irb */
	cr_assert_eq(memcmp(saved.data, "CCW1", 4), 0, "the state is not little-endian");
	cr_assert_eq(saved.data[4], (uint8_t)s.nr_irb);
	cr_assert_eq(walk(&d, MIG_STAGE_LOAD, &err), 0, "%s", err.msg);
	cr_assert_eq(walk(&d, MIG_STAGE_START, &err), 0, "%s", err.msg);
	for (int i = 0; i < 500 && __atomic_load_n(&d.delivered, __ATOMIC_RELAXED) < s.raised + 5; i++)
		usleep(10000);
	cr_assert_geq(d.delivered, s.raised + 5, "the destination delivered what waited, then "
		      "its own");
	cr_assert_eq(d.errors, 0, "%s", d.error_msg);
	cr_assert_eq(s.errors, 0, "%s", s.error_msg);
	*halts = s.halts;
	*clears = s.clears;
	ccw_sim_fini(&s);
	ccw_sim_fini(&d);
	mig_buf_free(&saved);
}

Test(ccw, short_programs_are_waited_out)
{
	uint64_t halts, clears;

	move(0, false, &halts, &clears);
	cr_assert_eq(halts, 0);
	cr_assert_eq(clears, 0);
}

Test(ccw, a_long_program_is_halted)
{
	uint64_t halts, clears;

	move(1, false, &halts, &clears);   /* every program outlasts the wait */
	cr_assert_eq(halts, 1);
	cr_assert_eq(clears, 0);
}

Test(ccw, a_halt_that_does_not_end_is_cleared)
{
	uint64_t halts, clears;

	move(1, true, &halts, &clears);
	cr_assert_eq(halts, 1);
	cr_assert_eq(clears, 1);
}

/* A rollback from a drained subchannel lets the guest go on. */
Test(ccw, rollback_resumes_the_guest)
{
	struct ccw_sim s;
	struct mig_error err = { 0 };
	uint64_t before;

	ccw_sim_init(&s, 0, 2000, 0, true);
	cr_assert_eq(ccw_sim_start(&s), 0);
	cr_assert_eq(walk(&s, MIG_STAGE_QUIESCE, &err), 0, "%s", err.msg);
	before = s.started;
	usleep(20000);
	cr_assert_eq(s.started, before, "quiesced: nothing starts");
	cr_assert_eq(walk(&s, MIG_STAGE_ROLLBACK, &err), 0, "%s", err.msg);
	for (int i = 0; i < 500 && __atomic_load_n(&s.started, __ATOMIC_RELAXED) < before + 5; i++)
		usleep(10000);
	cr_assert_geq(s.started, before + 5);
	ccw_sim_fini(&s);
}

/* A state that does not add up is refused before anything changes. */
Test(ccw, bad_state_is_refused)
{
	struct ccw_sim d;
	struct mig_error err = { 0 };
	uint8_t junk[16] = { 0 };

	ccw_sim_init(&d, 0, 2000, 0, false);
	saved.len = 0;
	mig_buf_append(&saved, junk, sizeof(junk));
	cr_assert_lt(walk(&d, MIG_STAGE_LOAD, &err), 0);
	cr_assert_not_null(strstr(err.msg, "state of 16 bytes"), "%s", err.msg);
	mig_buf_free(&saved);
}
