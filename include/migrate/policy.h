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

struct conv_params {
	uint64_t downtime_limit_ms;   /* switch over when the rest fits in this */
	uint64_t max_bandwidth_bps;   /* bytes/s cap on the wire, 0 = none */
	uint64_t timeout_ms;          /* total time allowed for PRECOPY, 0 = none */
	enum conv_timeout_action timeout_action;
	uint32_t max_rounds;          /* safety stop, 0 = default (64) */
};

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
};

/* While rounds keep halving what is left, go on until the expected downtime
 * is below this, even when it already fits the limit. */
#define CONV_SETTLE_MS 5

enum conv_action {
	CONV_CONTINUE,                /* another PRECOPY round */
	CONV_SWITCHOVER,              /* converged: stop the VM and copy the rest */
	CONV_FORCE_SWITCHOVER,        /* timeout with action force: switch over regardless */
	CONV_ABORT,                   /* timeout with action abort: give up, source keeps running */
	_CONV_ACTION_MAX,
};

struct conv_decision {
	enum conv_action action;
	uint64_t remaining_bytes;     /* estimated bytes to send at stop */
	uint64_t expected_downtime_ms;/* remaining_bytes at the usable bandwidth */
	uint64_t dirty_rate_bps;      /* bytes/s the guest dirtied during the round */
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
/* The convergence policy: a pure function of the round statistics. */
void conv_policy_decide(const struct conv_params *p, const struct conv_round *r,
			struct conv_decision *ret);
const char *conv_action_to_string(enum conv_action a);
const char *conv_timeout_action_to_string(enum conv_timeout_action a);
int conv_timeout_action_from_string(const char *s);

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

#endif
