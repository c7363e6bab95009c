/* SPDX-License-Identifier: MIT */
/*
 * What the chaos campaigns (chaos/runner.c for lab VMs, chaos/lv-runner.c
 * for libvirt domains) share: the start command as a child process, the
 * runner's acts on it, its one JSON object, and the agents' tables.
 */
#ifndef CHAOS_START_PROC_H
#define CHAOS_START_PROC_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <migrate/buf.h>
#include <migrate/chaos-run.h>
#include <migrate/chaos.h>
#include <migrate/control.h>
#include <migrate/wire-order.h>

struct json_object;

struct chaos_start_proc {
	pid_t pid;
	char out[PATH_MAX], err[PATH_MAX];   /* its stdout and stderr, set by the caller */
	int status;               /* waitpid's; -1 while it runs */
	uint64_t t0_ms, t1_ms;
};

void chaos_sleep_ms(uint64_t ms);
/* Runs `self` with argv (NULL-terminated), stdin from /dev/null, stdout and
 * stderr to sp->out and sp->err; it dies with the runner.  0, or -errno. */
int chaos_start_exec(const char *self, const char *const *argv, struct chaos_start_proc *sp);
/* Whether it has ended (reaping it once it has). */
bool chaos_start_reap(struct chaos_start_proc *sp);
/* Its exit code, or -1 if a signal ended it. */
int chaos_start_exit(const struct chaos_start_proc *sp);
/* The fault's signal for the start process (none, SIGKILL, SIGSTOP until
 * *cont_ms, SIGINT); true when it killed it. */
bool chaos_start_signal(struct chaos_start_proc *sp, const struct chaos_fault *f,
			uint64_t *cont_ms);
/* The start's stdout as exactly one JSON object (the caller puts it), its
 * text in *ret_buf (the caller frees it, for messages); NULL with why. */
struct json_object *chaos_start_json(const struct chaos_start_proc *sp, char **ret_buf,
				     char *why, size_t n);
/* A reply that is a table of structs of layout l: up to max of them into
 * out, in host order; the count.  Frees x. */
int chaos_table_reply(struct mig_buf *x, const struct mig_wire_layout *l, void *out,
		      unsigned max);
/* MIG_LIST's entries with their strings terminated. */
void chaos_migs_terminate(struct mig_migration_info *m, int n);
/* Whether the campaign goes on to run i (--replay, --runs, --duration,
 * a stop asked for), t0_ms its start; and a run's end: into the report,
 * then to the caller's on_run. */
bool chaos_run_next(const struct chaos_opts *o, uint64_t i, uint64_t t0_ms);
void chaos_run_done(const struct chaos_opts *o, struct chaos_report *rep,
		    const struct chaos_run *run);
/* Arms p on the agent at endpoint `agent` (action 0: disarms), and says
 * what became of the VM's previous plan there (rep may be NULL). */
int chaos_plan_arm(const char *agent, const char *key, const struct mig_fault_plan *p,
		   struct mig_fault_report *rep, int timeout_ms, struct mig_error *err);
/* Every plan of the run disarmed on its agent (one the migration never
 * reached must not wait for a later run), and each agent's word on whether
 * it fired, into run->fired and fired_how; agents gone[i] are not asked. */
void chaos_plans_collect(struct chaos_run *run, const char *const *agents, const char *key,
			 const bool *gone, int timeout_ms);

#endif
