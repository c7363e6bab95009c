/* SPDX-License-Identifier: MIT */
/*
 * Policies: pure functions of statistics, no I/O, no clocks of their own.
 * The phase engine feeds them what it measured and does what they decide.
 */
#ifndef MIGRATE_POLICY_H
#define MIGRATE_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include <migrate/error.h>

/* On the wire (mig_outgoing): 0 is never an action. */
enum conv_timeout_action {
	CONV_TIMEOUT_INVALID = 0,
	CONV_TIMEOUT_ABORT = 1,
	CONV_TIMEOUT_FORCE = 2,
	_CONV_TIMEOUT_ACTION_MAX,
};

/* How a migration that does not converge is made to (--converge); on the
 * wire (mig_outgoing): 0 is never a mode. */
enum conv_mode {
	CONV_MODE_INVALID = 0,
	CONV_MODE_NONE = 1,           /* rounds only: the timeout or max_rounds end it */
	CONV_MODE_THROTTLE = 2,       /* slow the vCPUs that dirty faster than the link */
	CONV_MODE_POSTCOPY = 3,       /* start on the destination, pages fetched on fault */
	CONV_MODE_AUTO = 4,           /* throttle; stalled anyway, post-copy where the VM can */
	_CONV_MODE_MAX,
};

/* What a stalled migration does (--stall-action); 0 is never one. */
enum conv_stall_action {
	CONV_STALL_INVALID = 0,
	CONV_STALL_ABORT = 1,         /* give up: the source keeps running */
	CONV_STALL_THROTTLE = 2,      /* throttle as hard as --max-throttle allows */
	CONV_STALL_POSTCOPY = 3,      /* switch to post-copy */
	_CONV_STALL_ACTION_MAX,
};

struct conv_params {
	uint64_t downtime_limit_ms;   /* switch over when the rest fits in this */
	uint64_t max_bandwidth_bps;   /* bytes/s cap on the wire, 0 = none */
	uint64_t timeout_ms;          /* total time allowed for PRECOPY, 0 = none */
	enum conv_timeout_action timeout_action;
	uint32_t max_rounds;          /* safety stop, 0 = default (64) */
	enum conv_mode mode;          /* 0 = CONV_MODE_NONE */
	uint32_t max_throttle_pct;    /* the most a vCPU is slowed, 1-99; 0 = default (99) */
	/* A stall: what is left has not shrunk below its lowest for this long
	 * or this many bytes sent (0 = that bound off; both 0 = no detection). */
	uint64_t stall_ms;
	uint64_t stall_bytes;
	enum conv_stall_action stall_action;  /* 0 = by mode (conv_stall_action_of()) */
	/* CONV_MODE_POSTCOPY: pre-copy rounds before the switch (0 = 1: the
	 * bulk copy only) */
	uint32_t postcopy_after;
	/* The VM can run with pages missing (the engine's finding): a stall
	 * under CONV_MODE_AUTO then switches to post-copy. */
	bool postcopy_ok;
};

#define CONV_DEFAULT_MAX_THROTTLE 99
/* The throttle's first step when rounds stop shrinking, and each step after
 * it while they still do not (QEMU's cpu-throttle-initial/-increment); the
 * policy takes more when the measured rates show more is needed. */
#define CONV_THROTTLE_INITIAL 20
#define CONV_THROTTLE_STEP 10
/* A round "shrinks" when it leaves at most this share (per cent) of what it
 * had to send; the throttle aims each round at CONV_THROTTLE_AIM_PCT. */
#define CONV_SHRINK_PCT 50
#define CONV_THROTTLE_AIM_PCT 25

/* What the engine measured after a PRECOPY round. */
struct conv_round {
	uint32_t round;               /* 0 = the bulk copy */
	uint64_t elapsed_ms;          /* since PRECOPY began */
	uint64_t round_ms;            /* duration of this round */
	uint64_t sent_bytes;          /* wire bytes this round */
	uint64_t sent_pages;          /* guest pages this round */
	uint64_t dirty_pages;         /* pages found dirty by the sync after it */
	uint64_t page_wire_bytes;     /* mean wire bytes per page so far (compression, zero pages) */
	uint64_t bandwidth_bps;       /* measured wire throughput of this round */
	uint64_t device_bytes;        /* device state still to send at stop (vCPU blobs ...) */
	uint64_t prev_dirty_pages;    /* pages this round had to send (0 = unknown) */
	uint32_t throttle_pct;        /* the throttle the vCPUs ran under this round */
};

/* What the policy carries from one round to the next: the engine keeps it,
 * zeroed before round 0, and passes it back unchanged. */
struct conv_state {
	uint32_t throttle_pct;        /* decided for the next round */
	uint32_t flat_rounds;         /* rounds in a row that did not shrink */
	uint64_t best_remaining;      /* the least left after any round (0: none yet) */
	uint64_t best_ms;             /* elapsed_ms when it was reached */
	uint64_t best_sent;           /* and total bytes sent by then */
	uint64_t sent;                /* total bytes sent so far */
	bool stalled;                 /* a stall was found (once per migration) */
};

/* While rounds keep halving what is left, go on until the expected downtime
 * is below this, even when it already fits the limit. */
#define CONV_SETTLE_MS 5

enum conv_action {
	CONV_CONTINUE,                /* another PRECOPY round */
	CONV_SWITCHOVER,              /* converged: stop the VM and copy the rest */
	CONV_FORCE_SWITCHOVER,        /* timeout with action force: switch over regardless */
	CONV_ABORT,                   /* timeout with action abort: give up, source keeps running */
	CONV_POSTCOPY,                /* start the VM on the destination, the rest after it */
	_CONV_ACTION_MAX,
};

struct conv_decision {
	enum conv_action action;
	uint64_t remaining_bytes;     /* estimated bytes to send at stop */
	uint64_t expected_downtime_ms;/* remaining_bytes at the usable bandwidth */
	uint64_t dirty_rate_bps;      /* bytes/s the guest dirtied during the round */
	uint32_t throttle_pct;        /* the vCPUs' throttle for the next round (0: none) */
	enum conv_stall_action stall; /* a stall was found now and this was done (0: none) */
	const char *reason;           /* static text: why this action */
};

/* The switchover deadline: how long STOP_COPY may keep the guest paused,
 * waiting for the destination to take the last pages and load the VM,
 * before the source gives up and resumes it.  Twice the downtime limit plus
 * CONV_SWITCHOVER_SLACK_MS, plus CONV_VERIFY_MS_PER_GIB per GiB of guest RAM
 * when both sides hash it (--verify); never less than twice the expected
 * downtime plus the slack, as a forced switchover goes beyond the limit. */
#define CONV_SWITCHOVER_SLACK_MS 5000
#define CONV_VERIFY_MS_PER_GIB 1000
uint64_t conv_switchover_timeout_ms(const struct conv_params *p, uint64_t expected_downtime_ms,
				    uint64_t ram_bytes, bool verify);

void conv_params_default(struct conv_params *p);
/* The convergence policy: a pure function of the round statistics and of
 * what it carried over (st, updated; NULL: none, so no throttle and no
 * stall detection). */
void conv_policy_decide(const struct conv_params *p, const struct conv_round *r,
			struct conv_decision *ret);
void conv_policy_step(const struct conv_params *p, const struct conv_round *r,
		      struct conv_state *st, struct conv_decision *ret);
/* The stall action a mode implies when none is given. */
enum conv_stall_action conv_stall_action_of(const struct conv_params *p);
/*
 * Per-vCPU dirty limits (the dirty ring knows which vCPU dirtied what):
 * the pages each of n vCPUs dirtied in the last round, `dirtied`, under
 * the throttle each ran with, `was_pct`; the VM-wide throttle the round
 * policy chose, `pct`.  The budget is what all of them would dirty at
 * `pct`; it is shared equally, a vCPU that dirties less than its share
 * runs free and leaves the rest to the others, and each vCPU above its
 * share is slowed just enough to fit it (at most max_pct).  Writes each
 * vCPU's throttle to out_pct.
 */
void conv_vcpu_limits(uint32_t pct, uint32_t max_pct, const uint64_t *dirtied,
		      const uint32_t *was_pct, unsigned n, uint32_t *out_pct);
const char *conv_action_to_string(enum conv_action a);
const char *conv_timeout_action_to_string(enum conv_timeout_action a);
int conv_timeout_action_from_string(const char *s);
const char *conv_mode_to_string(enum conv_mode m);
int conv_mode_from_string(const char *s);
const char *conv_stall_action_to_string(enum conv_stall_action a);
int conv_stall_action_from_string(const char *s);

/* ---- the agent's own memory (docs/performance.md): what it adds beyond
 * guest RAM stays within MEM_BUDGET_PERCENT of it ---- */
#define MEM_BUDGET_PERCENT 3
/* What an agent holds whatever it migrates: its code and libraries, the
 * control connection (measured here: 3.6 MiB idle). */
#define MEM_AGENT_BYTES (8ULL << 20)
/* Each data stream, compression aside: its ring, its thread's stack as
 * used, its frames' metadata. */
#define MEM_STREAM_BYTES (256ULL << 10)
/* Dirty bitmaps, one bit per guest page each: the engine's, the memory
 * class's pending and per-slot ones, the backend's. */
#define MEM_BITMAPS 4
/* How many of `streams` data streams may hold compression buffers of
 * `per_stream` bytes each (a copy of a batch, its compressed form, the
 * codec's context), within the budget for `ram_bytes` of guest RAM, after
 * the fixed costs above.  At least 1, so that --compress always
 * compresses: with less than about 300 MiB of guest RAM, the agent's fixed
 * costs alone are over the budget. */
unsigned mem_policy_codec_streams(uint64_t ram_bytes, unsigned streams, uint64_t per_stream);

/* ---- host compatibility (docs/policies.md): pure functions of what a VM
 * needs and what a host offers, run at SETUP before anything stops ---- */

/* A CPUID register whose bits are features (reg: 0 EAX, 1 EBX, 2 ECX,
 * 3 EDX). */
struct compat_cpuid_reg {
	uint32_t leaf, subleaf;
	uint8_t reg;
};
#define COMPAT_CPUID_REGS 11
/* The registers compared, in the order of compat_cpuid()'s arrays. */
extern const struct compat_cpuid_reg compat_cpuid_features[COMPAT_CPUID_REGS];
/* 0 when the host offers every feature the guest sees (guest[i] and
 * host[i] are compat_cpuid_features[i]'s values); else -ENOTSUP naming the
 * first missing feature (its leaf, register, bit and, where known, name),
 * both values and what to do.  Bits that mirror the guest's own state
 * (OSXSAVE, OSPKE) are no features and are not compared. */
int compat_cpuid(const uint32_t *guest, const uint32_t *host, struct mig_error *err);
/* A feature by the name the table of compat_cpuid's messages gives it
 * (Linux's names: "avx2", "sse4_2"): its register's index in
 * compat_cpuid_features and its bit; -ENOENT for a name not there. */
int compat_cpuid_feature(const char *name, unsigned *ret_reg_index, unsigned *ret_bit);

/* ---- memory slots ---- */

/* The address spaces a description counts slots in (x86: 0 normal, 1 SMM). */
#define COMPAT_ADDRESS_SPACES 2
/* What a VM's memory needs of a host: per address space, its slots and the
 * highest slot id (+1) it uses (0 and 0 where it has none). */
struct compat_memslots {
	uint32_t slots[COMPAT_ADDRESS_SPACES];
	uint32_t id_end[COMPAT_ADDRESS_SPACES];
};
/* 0 when a host whose KVM allows `nr_memslots` user slots per address space
 * (KVM_CAP_NR_MEMSLOTS) in `nr_as` address spaces (KVM_CAP_MULTI_ADDRESS_SPACE,
 * 0 read as 1) holds them; else -ENOSPC naming the address space, both
 * values and what to do. */
int compat_memslots(const struct compat_memslots *vm, uint32_t nr_memslots, uint32_t nr_as,
		    struct mig_error *err);

/* ---- the PMU: MSR_IA32_PERF_CAPABILITIES (KERNEL-UAPI §3.6) ---- */

#define COMPAT_MSR_PERF_CAPABILITIES 0x345U
#define COMPAT_PERF_CAP_PEBS_FORMAT 0xf00ULL
/* PEBS_TRAP (6), PEBS_ARCH_REG (7), the format (11:8), PEBS_BASELINE (14) */
#define COMPAT_PERF_CAP_PEBS_MASK (1ULL << 6 | 1ULL << 7 | COMPAT_PERF_CAP_PEBS_FORMAT | 1ULL << 14)
/* 0 when a host whose KVM supports PERF_CAPABILITIES `host` (its feature
 * MSR; 0 where it has no PMU for guests) can take a guest given `guest`:
 * a subset of it, and where the guest has PEBS (a non-zero format) the PEBS
 * bits exactly equal.  Else -ENOTSUP naming the bits, both values and what
 * to do. */
int compat_perf_caps(uint64_t guest, uint64_t host, struct mig_error *err);

/* ---- the MSRs in a vCPU's saved state ---- */

/* 0 when every MSR of guest[0..n) is in host[0..m) (what the destination's
 * KVM accepts: KVM_GET_MSR_INDEX_LIST and the feature MSR list, any
 * order); else -ENOTSUP naming the first that is not, how many are not,
 * and what to do (KVM_SET_MSRS would refuse it after the guest stopped). */
int compat_msrs(const uint32_t *guest, unsigned n, const uint32_t *host, unsigned m,
		struct mig_error *err);
/* A sorted list of MSR indices as runs, in at most `cap` bytes of out
 * (a varint of the gap from the previous run's end, a varint of the run's
 * length - 1, each run in turn): the number of bytes, or -E2BIG.  Decode
 * gives at most `max` indices back, or -EBADMSG for bytes that are no such
 * list, or -E2BIG. */
int compat_msrs_encode(const uint32_t *sorted, unsigned n, uint8_t *out, size_t cap);
int compat_msrs_decode(const uint8_t *p, size_t len, uint32_t *out, unsigned max);

/* ---- VFIO BARs ---- */

#define COMPAT_BAR_PREFETCH 1U    /* a prefetchable memory BAR (its config space bit) */
#define COMPAT_BAR_WC 2U          /* mapped write-combining */
/* 0 when the destination's BAR `name` (attrs `dst`) keeps what the guest
 * had of the source's (`src`): the same prefetchable bit (the guest reads
 * it), and a write-combining mapping where the source had one (and none
 * where it had none: the guest's driver saw either ordering).  Else -ENODEV
 * naming the BAR, both values and what to do. */
int compat_vfio_bar(const char *name, uint32_t src, uint32_t dst, struct mig_error *err);

/* ---- describing a different host (agent --host-profile) ---- */

#define COMPAT_PROFILE_MSRS 16
/* What an agent says of its host instead of what its KVM says: for lab
 * teams qualifying these policies, a smaller or different host on this
 * one.  Only the descriptions and checks above see it; the VMs do not. */
struct compat_profile {
	uint32_t memslots;                 /* KVM_CAP_NR_MEMSLOTS at most this (0: as KVM says) */
	uint32_t address_spaces;           /* KVM_CAP_MULTI_ADDRESS_SPACE at most this (0: as KVM) */
	uint32_t cpuid_off[COMPAT_CPUID_REGS];  /* features this KVM is said not to offer */
	bool has_perf_caps;
	uint64_t perf_caps;                /* the PERF_CAPABILITIES its KVM is said to support */
	bool has_guest_perf_caps;
	uint64_t guest_perf_caps;          /* the value its vCPUs are described as given */
	uint32_t msr_off[COMPAT_PROFILE_MSRS];  /* MSRs its KVM is said not to accept */
	unsigned nr_msr_off;
};
/* "KEY=VALUE,...": memslots=N, address-spaces=N, cpuid-off=NAME or
 * cpuid-off=LEAF.SUBLEAF.REG.BIT (repeatable), perf-caps=HEX,
 * guest-perf-caps=HEX, msr-off=HEX (repeatable).  -EINVAL with what is
 * wrong. */
int compat_profile_parse(const char *spec, struct compat_profile *ret, struct mig_error *err);
/* The host a check sees: KVM's values with the profile applied. */
uint32_t compat_profile_memslots(const struct compat_profile *p, uint32_t kvm);
uint32_t compat_profile_address_spaces(const struct compat_profile *p, uint32_t kvm);
void compat_profile_cpuid(const struct compat_profile *p, uint32_t *host);
uint64_t compat_profile_perf_caps(const struct compat_profile *p, uint64_t kvm);
/* Drops the profile's msr_off from list[0..n): the new count. */
unsigned compat_profile_msrs(const struct compat_profile *p, uint32_t *list, unsigned n);

/* This process's profile (the agent sets it once, before it serves): NULL
 * where there is none, the host as its KVM says. */
void compat_profile_set(const struct compat_profile *p);
const struct compat_profile *compat_profile_get(void);

#endif
