/* SPDX-License-Identifier: MIT */
/*
 * The channel I/O device class (vfio-ccw, sim only): a subchannel whose
 * channel programs run asynchronously and end with interrupts.  Its
 * quiesce waits out the program in flight within a deadline, or halts it,
 * or clears it, so that it is saved idle and every interrupt it raised is
 * either delivered or saved, never lost.
 *
 * The subchannel's own state machine is vfio-ccw's after its HALT/CLEAR
 * fix: IDLE, CP_PROCESSING (a START being set up), CP_PENDING (a program
 * running), NOT_OPER (the device is gone); START, HALT and CLEAR requests
 * and the interrupts they end with are serialised under one lock.
 */
#ifndef DEVICES_CCW_H
#define DEVICES_CCW_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <migrate/device.h>

/* the class's states */
enum ccw_state {
	CCW_NEW,        /* destination: made, nothing loaded */
	CCW_RESTORED,   /* destination: state loaded */
	CCW_RUNNING,    /* the guest starts programs and takes interrupts */
	CCW_DRAINING,   /* no new START; the program in flight may end */
	CCW_QUIESCED,   /* idle, nothing in flight: state complete */
	CCW_RELEASED,   /* this copy is given up */
	CCW_N
};

/* the subchannel's */
enum ccw_fsm { CCW_FSM_IDLE, CCW_FSM_CP_PROCESSING, CCW_FSM_CP_PENDING, CCW_FSM_NOT_OPER };

#define CCW_IRB_MAX 64

struct ccw_sim {
	struct mig_device dev;
	pthread_mutex_t lock;
	pthread_cond_t changed;
	enum ccw_fsm fsm;
	bool accept_start;        /* the class lets the guest start programs */
	bool deliver;             /* and take interrupts */
	uint64_t prog_end_ns;     /* CLOCK_MONOTONIC: when the program in flight ends */
	uint64_t long_every;      /* every Nth program runs long (0: none) */
	uint64_t started, raised, delivered, halts, clears;
	uint64_t irb[CCW_IRB_MAX];/* raised, not delivered: each interrupt's number */
	unsigned nr_irb;
	uint64_t errors;          /* self-check: an interrupt missing or twice */
	char error_msg[128];
	uint32_t rate;            /* programs a second the guest starts */
	bool halt_stuck;          /* a halt never ends: only a clear does (tests) */
	pthread_t thread;
	bool thread_on, quit;
};

extern const struct mig_device_class ccw_class;

void ccw_sim_init(struct ccw_sim *c, unsigned id, uint32_t rate, uint64_t long_every, bool source);
/* The guest's side: start programs, take interrupts, check their order. */
int ccw_sim_start(struct ccw_sim *c);
void ccw_sim_fini(struct ccw_sim *c);
/* One step of the guest and the device by hand (the thread does these). */
void ccw_sim_tick(struct ccw_sim *c);

#endif
