/* SPDX-License-Identifier: MIT */
/*
 * Chaos mode (docs/chaos.md): the fault catalogue, each fault made from a
 * seed and a run number alone, so that any run of a campaign can be
 * replayed by itself; and the campaign runner.
 */
#ifndef MIGRATE_CHAOS_H
#define MIGRATE_CHAOS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <migrate/control.h>
#include <migrate/error.h>

enum chaos_class {
	CHAOS_NETWORK = 1,
	CHAOS_PROCESS,
	CHAOS_DEVICE,
	CHAOS_OPERATOR,
	CHAOS_HOSTILE,
	_CHAOS_CLASS_END,
};
const char *chaos_class_name(enum chaos_class c);

/* The phases a fault may be aimed at (bit 1 << enum mig_phase). */
#define CHAOS_PH(p) (1U << (p))
#define CHAOS_PH_ALL (CHAOS_PH(MIG_PHASE_SETUP) | CHAOS_PH(MIG_PHASE_PRECOPY) | \
		      CHAOS_PH(MIG_PHASE_STOP_COPY) | CHAOS_PH(MIG_PHASE_COMMIT))
/* Post-copy (docs/chaos.md, "Post-copy"): a run aimed at it migrates with
 * --converge postcopy, a bandwidth cap and a VM of its own that cannot
 * converge under it, so that the phase lasts a second or two. */
#define CHAOS_PH_PC CHAOS_PH(MIG_PHASE_POSTCOPY)
/* Every phase a campaign aims at: pre-copy's arc and post-copy. */
#define CHAOS_PH_ANY (CHAOS_PH_ALL | CHAOS_PH_PC)
/* The post-copy run's VM and its link (CHAOS_PH_PC): round 0 takes about
 * 0.8 s, and the 14 MiB the guest writes meanwhile come after the switch
 * (about 0.7 s more, beyond the 300 ms downtime limit), so that the phase
 * lasts long enough for a fault and a run costs a pre-copy run's time. */
#define CHAOS_PC_LAB "mem=16M,vcpus=2,wss=14M,pattern=random"
#define CHAOS_PC_BANDWIDTH "20M"
/* The source tries to make a broken post-copy link again once a second, and
 * gives up when the next try would come after --recover-window: a link back
 * within the window's last second may be missed (engine-src.c, pc_recover). */
#define CHAOS_PC_RETRY_MS 1000

/* What the runner does to the start process (the orchestrator). */
enum chaos_signal_act {
	CHAOS_SIG_NONE = 0,
	CHAOS_SIG_KILL,           /* SIGKILL */
	CHAOS_SIG_STOP,           /* SIGSTOP, SIGCONT after stop_ms */
	CHAOS_SIG_INT,            /* Ctrl-C: the start cancels */
};

/* One fault, as a run carries it out. */
struct chaos_fault {
	unsigned kind;            /* index into chaos_kinds */
	enum mig_phase phase;     /* the phase it is aimed at */
	char trigger[192];        /* in words */
	/* for the agents (action 0: none) */
	struct mig_fault_plan src_plan, dst_plan;
	/* for the runner, after `delay_permille` of the expected run time */
	enum chaos_signal_act start_signal;
	uint32_t delay_permille;
	uint32_t stop_ms;         /* CHAOS_SIG_STOP */
	bool cancel_op;           /* a `migratectl cancel` (MIG_CANCEL) at the delay */
	bool destroy_src, destroy_dst;   /* a VM_DESTROY of the VM at the delay */
	bool double_start;        /* a second start of the same VM at once */
	unsigned hostile;         /* enum chaos_hostile_kind (hostile.h), 0: none */
	bool hostile_mig_port;    /* at the destination's migration listener, else its agent */
	/* a fault on an agent's veth link (the runner's namespaces, netns.h) */
	unsigned link;            /* enum chaos_link_fault, 0: none */
	bool link_dst;            /* the destination's link, else the source's */
	uint64_t link_arg;        /* RATE: bytes/s */
	uint32_t link_ms;         /* healed after this long */
	/* a --timeout that fires: the runner adds a --max-bandwidth under which
	 * round 0 takes 60 % of it and the guest cannot converge */
	uint32_t timeout_ms;
	bool timeout_force;
	char start_extra[160];    /* more `start` options, space-separated */
	char lab_extra[64];       /* more lab spec keys: the run gets a VM of its own */
	/* what the fault does to the agents: their deaths are expected */
	bool kills_src, kills_dst;
	/* a libvirt domain's migration: the agents' points and the network
	 * triggers are frames of the tunnel's channels (protocol.md §11) */
	bool tunnel;
	/* post-copy (phase MIG_PHASE_POSTCOPY): --recover-window given to
	 * start (0: its default, 10 min), and how long the fault keeps the link
	 * broken (0: a moment, as a reset).  A split (exit 3, both halves
	 * held) is allowed only when outage_ms, and the source's retry
	 * interval, outlast the window. */
	uint32_t recover_ms;
	uint32_t outage_ms;
	bool may_split;
};

struct chaos_rng {
	uint64_t s;
};
uint64_t chaos_rng_next(struct chaos_rng *r);
/* A number in [lo, hi]. */
uint64_t chaos_rng_range(struct chaos_rng *r, uint64_t lo, uint64_t hi);

struct chaos_kind {
	const char *name;
	enum chaos_class cls;
	unsigned phases;          /* CHAOS_PH() of those it can be aimed at */
	const char *what;         /* one line for the catalogue */
	void (*make)(struct chaos_fault *f, struct chaos_rng *r, const char *vm);
};
extern const struct chaos_kind chaos_kinds[];
extern const unsigned chaos_nr_kinds;

/* A --faults LIST: "all", class names, kind names, comma-separated, into a
 * mask of kinds (bit i: chaos_kinds[i]).  -EINVAL naming the unknown word. */
int chaos_faults_parse(const char *list, uint64_t *ret_mask, struct mig_error *err);
/* The kinds of mask a cluster can take: agents the runner did not start
 * (not local) cannot be started again, so no fault kills one. */
uint64_t chaos_cluster_mask(uint64_t mask, bool local);
/* Run `run` of a campaign with `seed` over the kinds in mask, for VM vm:
 * a function of these alone.  The kinds are taken in turn (run % count),
 * so that every kind and, over its runs, every phase it applies to comes
 * up; the trigger inside the phase is drawn from the seed. */
void chaos_fault_make(uint64_t seed, uint64_t run, uint64_t mask, const char *vm,
		      struct chaos_fault *f);
/* The same, aimed only at the phases of `phases` (CHAOS_PH(), 0: every
 * one, CHAOS_PH_ANY): the kinds of mask that apply to none of them are
 * left out.  chaos_fault_make() is this with 0. */
void chaos_fault_make_in(uint64_t seed, uint64_t run, uint64_t mask, unsigned phases,
			 const char *vm, struct chaos_fault *f);
/* The kinds of mask that apply to a phase of `phases` (0: every one). */
uint64_t chaos_phase_mask(uint64_t mask, unsigned phases);
/* A --phases LIST: phase names (setup, precopy, stop_copy, commit,
 * postcopy), comma-separated, into CHAOS_PH() bits; -EINVAL naming the
 * unknown word. */
int chaos_phases_parse(const char *list, unsigned *ret, struct mig_error *err);
/* The same for a libvirt domain's migration: the kinds of mask it takes
 * (chaos_lv_mask), aimed at setup, precopy or stop_copy (what libvirt's
 * job shows), their triggers in the agents' tunnel. */
void chaos_lv_fault_make(uint64_t seed, uint64_t run, uint64_t mask, const char *domain,
			 struct chaos_fault *f);
/* The kinds of mask a libvirt domain's campaign can take: the tunnel's
 * network faults and the agents' deaths and freezes (when agent_faults:
 * the agents run with --chaos), the start process's, and cancel. */
uint64_t chaos_lv_mask(uint64_t mask, bool agent_faults);
#define CHAOS_LV_PHASES (CHAOS_PH(MIG_PHASE_SETUP) | CHAOS_PH(MIG_PHASE_PRECOPY) | \
			 CHAOS_PH(MIG_PHASE_STOP_COPY))

#endif
