/* SPDX-License-Identifier: MIT */
/*
 * The agent's side of chaos mode (docs/chaos.md): fault plans armed by
 * MIG_OP_FAULT_ARM for the next migration of a VM, and the fault hook that
 * carries them out in that migration's engine.
 */
#ifndef AGENT_FAULT_H
#define AGENT_FAULT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include <migrate/fault.h>

#define AGENT_FAULT_PLANS 64

struct agent_faults {
	pthread_mutex_t lock;
	struct mig_fault_plan plans[AGENT_FAULT_PLANS];   /* vm[0] == '\0': free */
	/* what became of each VM's latest plan, until the next FAULT_ARM reads it */
	struct {
		char vm[MIG_NAME_MAX];
		struct mig_fault_report rep;
	} reports[AGENT_FAULT_PLANS];
	void (*log)(void *arg, const char *line);
	void *log_arg;
};

/* One migration's armed plan, for its engine's fault hook. */
struct agent_fault {
	struct agent_faults *fs;
	struct mig_fault_plan plan;
	atomic_ullong seen;       /* matching points so far */
	atomic_bool fired;
};

void agent_faults_init(struct agent_faults *fs, void (*log)(void *, const char *), void *arg);
/* Arms (or with action 0 disarms) the plan for its VM; <0 with why.  rep:
 * what became of the VM's previous plan (taken, fired, where), now forgotten. */
int agent_faults_arm(struct agent_faults *fs, const struct mig_fault_plan *p,
		     struct mig_fault_report *rep, struct mig_error *err);
/* A relay's toxic fired (the relay is the agent's, outside the hook). */
void agent_fault_fired(struct agent_fault *f, const char *what);
/* The plan for VM name, taken (the next migration gets none); NULL if none.
 * A SKEW plan takes effect now, until agent_fault_end(). */
struct agent_fault *agent_faults_take(struct agent_faults *fs, const char *name);
/* The hook (mig_fault_fn) for a taken plan. */
int agent_fault_hook(void *arg, const struct mig_fault_point *p, struct mig_error *err);
/* The migration is over: the clock's skew ends, the plan is freed. */
void agent_fault_end(struct agent_fault *f);

#endif
