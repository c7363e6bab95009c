/* SPDX-License-Identifier: MIT */
/*
 * The chaos campaign runner (docs/chaos.md): migrations on a lab cluster,
 * one fault each, and after every run the invariants checked by the runner
 * from what it sees itself: the agents' journals, their VM lists, their
 * processes, and the start command's exit code and JSON.  Library code: it
 * prints nothing, and reports each run to the caller.
 */
#ifndef MIGRATE_CHAOS_RUN_H
#define MIGRATE_CHAOS_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include <migrate/chaos.h>
#include <migrate/control.h>
#include <migrate/error.h>

#define CHAOS_MAX_AGENTS 8

/* How a run ended, as the runner judges it (not as the product says). */
enum chaos_outcome {
	CHAOS_OUT_COMPLETED = 1,  /* exit 0: the VM runs on the destination */
	CHAOS_OUT_ROLLED_BACK,    /* exit 1: the VM runs on the source */
	CHAOS_OUT_HELD,           /* exit 3: a copy kept paused for an operator */
	CHAOS_OUT_OPERATOR,       /* exit 3 otherwise: the source agent lost, say */
	CHAOS_OUT_LOST_WITH_AGENT,/* the only copy died with the agent the fault killed */
	/* post-copy only (docs/chaos.md, "Post-copy"): the documented loss */
	CHAOS_OUT_SPLIT,          /* exit 3: the link stayed down past --recover-window,
				   * both halves held */
	CHAOS_OUT_LOST_IN_POSTCOPY,/* exit 3: an agent the fault killed took its half,
				   * the other half held */
	CHAOS_OUT_NO_EXIT,        /* the fault killed the start process */
	CHAOS_OUT_VIOLATION,      /* an invariant failed */
	_CHAOS_OUT_END,
};
const char *chaos_outcome_name(enum chaos_outcome o);

/* The invariants (docs/chaos.md §Invariants). */
enum chaos_invariant {
	CHAOS_INV_NEVER_TWO = 1,
	CHAOS_INV_NEVER_NONE,
	CHAOS_INV_NOTHING_LOST,
	CHAOS_INV_CONTRACT,
	CHAOS_INV_NO_LEAKS,
	CHAOS_INV_BOUNDED,
	_CHAOS_INV_END,
};
const char *chaos_invariant_name(enum chaos_invariant i);

struct chaos_run {
	uint64_t index;
	struct chaos_fault fault;
	char vm[64];
	unsigned src, dst;        /* agents */
	bool fired;               /* the fault happened (an agent or the runner says so) */
	char fired_how[320];      /* what fired, where */
	int exit_code;            /* the start's; -1: it was killed */
	char result[16], owner[16];
	uint64_t ms;              /* the run, from the start's launch to its exit */
	uint64_t downtime_ms;     /* the JSON's, completed runs */
	enum chaos_outcome outcome;
	enum chaos_invariant invariant;   /* the first that failed (0: none) */
	char detail[1024];        /* what failed */
	char dir[256];            /* what was saved of a violation */
	char replay[512];         /* the command that replays it */
};

/* ---- the verdicts (chaos/judge.c): pure functions of what the runner saw ---- */

/* What start printed (--json), as far as the checks need it. */
struct chaos_start_json {
	char id[40], result[16], owner[16], error[512];
	bool has_downtime, verified, match;
	uint64_t downtime_ms, verify_ms, dst_errors;
	uint64_t switchover_ms;   /* the switchover deadline the run had (0: not said) */
	bool has_precommit;
	uint64_t precommit_ms;    /* phase stop_copy's duration: the pause before COMMIT */
	bool reached_postcopy;    /* the phases name postcopy: the VM started on the
				   * destination with pages missing */
	bool source_copy;
	char copy_agent[128], copy_vm[64];
};

/* The copies of one VM the agents list. */
struct chaos_copies {
	unsigned running, held, paused, migrating;
	unsigned run_at, held_at;         /* an agent with such a copy */
	bool held_on[CHAOS_MAX_AGENTS];   /* agents with a held copy (post-copy: halves) */
	struct mig_vm_info held_info;
	uint64_t passes, errors;          /* the running copy's */
	bool listed[CHAOS_MAX_AGENTS];    /* the agent answered */
};

/* Records a failed invariant in run (the first one stays). */
void chaos_violation(struct chaos_run *run, enum chaos_invariant inv, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The start's exit (exit_code -1: a signal, term_signal) and its JSON
 * (json_ok false: why says what was wrong with it) against the contract:
 * fills run->exit_code, result, owner and outcome, or a violation. */
void chaos_judge_exit(struct chaos_run *run, int exit_code, int term_signal, bool killed_by_runner,
		      bool json_ok, const char *why, const struct chaos_start_json *j);
/* Where the VM is after the run (before: a settle period earlier; after:
 * now) against run's outcome and exit code: never two, never none
 * silently, nothing lost, and the copy the exit code names.  src_dead and
 * dst_dead: the agents the fault killed and the runner saw die. */
void chaos_judge_copies(struct chaos_run *run, const struct chaos_copies *before,
			const struct chaos_copies *after, const struct chaos_start_json *j,
			bool src_dead, bool dst_dead, uint32_t settle_ms);
/* downtime_ms the JSON gives against the journals' pause (verification's
 * time left out), within 50 ms + half the journals' figure; frozen_ms more
 * when the fault froze the source (SIGSTOP), which no journal sees. */
void chaos_judge_downtime(struct chaos_run *run, uint64_t json_ms, uint64_t journal_ms,
			  uint64_t verify_ms, uint64_t frozen_ms);

struct chaos_opts {
	unsigned local;                   /* agents started here (2..CHAOS_MAX_AGENTS) */
	const char *agents[CHAOS_MAX_AGENTS];   /* or these (tcp://), with key_file */
	unsigned nr_agents;
	const char *key_file;
	uint64_t runs;                    /* 0: until duration */
	uint64_t duration_ms;             /* 0: until runs */
	uint64_t seed;
	uint64_t mask;                    /* kinds (chaos_faults_parse) */
	const char *faults;               /* as given, for the replay command */
	unsigned phases;                  /* CHAOS_PH() aimed at (0: all) */
	const char *phases_arg;           /* --phases as given, for the replay command */
	const char *lab;                  /* the lab VM's spec */
	const char *const *start_args;    /* passed to each start */
	unsigned nr_start_args;
	const char *dir;                  /* where logs, journals and violations go */
	const char *self;                 /* the migratectl binary */
	bool replay;                      /* run only replay_run */
	uint64_t replay_run;
	int netns;                        /* -1 never, 0 when root, 1 required */
	uint32_t settle_ms;
	const char *lv_domain;            /* --vm libvirt:NAME: this domain, on --agents */
	/* after each run */
	void (*on_run)(void *arg, const struct chaos_run *run);
	void *arg;
	/* set asynchronously: stop after the current run */
	const volatile int *stop;
};

struct chaos_report {
	uint64_t seed;
	uint64_t runs, violations, fired, elapsed_ms;
	char cluster[256];                /* "2 agents in network namespaces, ..." */
	char network[256];                /* where network faults are injected */
	/* [kind][phase][outcome] */
	uint32_t table[64][_MIG_PHASE_MAX][_CHAOS_OUT_END];
	uint32_t fired_by_kind[64][_MIG_PHASE_MAX];
	uint32_t *run_ms;                 /* every run's time, for percentiles */
	uint64_t nr_run_ms, cap_run_ms;
	struct chaos_run *bad;            /* the violations (up to 100) */
	unsigned nr_bad;
	/* a libvirt domain's campaign: overlaps within the tolerance for
	 * libvirt's event delivery (docs/chaos.md, "libvirt domains") */
	uint64_t lv_overlaps_tolerated, lv_overlap_max_ns;
};

/* Runs the campaign; 0 when it ran (rep says whether runs failed), <0 when
 * the cluster could not be set up.  chaos_report_free() after. */
int chaos_campaign(const struct chaos_opts *o, struct chaos_report *rep, struct mig_error *err);
void chaos_report_free(struct chaos_report *rep);
/* One run into the report's counts and dir/runs.jsonl. */
void chaos_report_run(struct chaos_report *rep, const char *dir, const struct chaos_run *run);

/* ---- a libvirt domain's campaign (chaos/lv-runner.c, docs/chaos.md, "libvirt domains") ---- */

/* An overlap of two hosts' journaled runs of a domain that is no violation:
 * libvirt's lifecycle events are stamped when the agent receives them. */
#define CHAOS_LV_OVERLAP_TOLERANCE_NS (50ULL * 1000000)

/* Where a domain is, as LV_DOMAIN says (MIG_LV_STATE_*; 0: no answer). */
struct chaos_lv_seen {
	uint32_t src, dst;
};
/* What start --json said of a libvirt migration. */
struct chaos_lv_json {
	char id[40], result[16], owner[16], src_state[16], dst_state[16], error[512];
};
/* The contract (docs/chaos.md, "libvirt domains"): the start's exit code and JSON
 * against where the domain is after the run, settled.  Fills run's
 * exit_code, result, owner and outcome, or a violation. */
void chaos_lv_judge(struct chaos_run *run, int exit_code, bool killed_by_runner, bool json_ok,
		    const char *why, const struct chaos_lv_json *j, const struct chaos_lv_seen *seen);

int chaos_lv_campaign(const struct chaos_opts *o, struct chaos_report *rep,
		      struct mig_error *err);

#endif
