// SPDX-License-Identifier: MIT
/*
 * The chaos runner's verdicts (include/migrate/chaos-run.h): pure functions
 * of what the runner saw of a run, so that each rule is tested on its own
 * (tests/test-chaos.c) and the runner only gathers the evidence.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <migrate/chaos-run.h>
#include <migrate/engine.h>

#include "util.h"

void chaos_violation(struct chaos_run *run, enum chaos_invariant inv, const char *fmt, ...)
{
	va_list ap;

	if (run->invariant)
		return;           /* the first one found is the one reported */
	run->invariant = inv;
	run->outcome = CHAOS_OUT_VIOLATION;
	va_start(ap, fmt);
	vsnprintf(run->detail, sizeof(run->detail), fmt, ap);
	va_end(ap);
}

#define violation chaos_violation

/* How late a deadline may be kept on a loaded host. */
#define DEADLINE_SLACK_MS 200

/* How long the fault froze the source (SIGSTOP), if it did. */
static uint64_t src_frozen_ms(const struct chaos_run *run)
{
	return run->fired && run->fault.src_plan.action == MIG_FAULT_A_STOP ?
	       run->fault.src_plan.ms : 0;
}

/* The error post-copy's split starts with (engine-src.c). */
#define PC_SPLIT "post-copy broke:"

static bool pc_split_said(const struct chaos_start_json *j)
{
	return !strncmp(j->error, PC_SPLIT, strlen(PC_SPLIT));
}

/* A fault the runner acted on that must leave post-copy to finish: the
 * pages must all go, whatever an operator asks. */
static bool pc_ignored_fault(const struct chaos_run *run)
{
	return run->fault.phase == MIG_PHASE_POSTCOPY && run->fired &&
	       !strcmp(chaos_kinds[run->fault.kind].name, "cancel");
}

void chaos_judge_exit(struct chaos_run *run, int code, int term_signal, bool killed_by_runner,
		      bool json_ok, const char *why, const struct chaos_start_json *j)
{
	run->exit_code = code;
	if (killed_by_runner && code == -1) {
		run->outcome = CHAOS_OUT_NO_EXIT;
		return;
	}
	if (code == -1) {
		violation(run, CHAOS_INV_CONTRACT, "the start process died of signal %d (%s)",
			  term_signal, strsignal(term_signal));
		return;
	}
	if (!json_ok) {
		violation(run, CHAOS_INV_CONTRACT, "exit %d, and %s", code, why);
		return;
	}
	str_copy(run->result, sizeof(run->result), j->result);
	str_copy(run->owner, sizeof(run->owner), j->owner);
	/* Post-copy's split is a loss the product documents, and only post-copy
	 * may cause it: never in a run aimed elsewhere (docs/chaos.md). */
	if (pc_split_said(j) && run->fault.phase != MIG_PHASE_POSTCOPY) {
		violation(run, CHAOS_INV_CONTRACT, "start says the VM was split by post-copy in a "
			  "run aimed at %s: %.300s", mig_phase_to_string(run->fault.phase),
			  j->error);
		return;
	}
	if (pc_split_said(j) && (code != 3 || strcmp(j->result, "failed") ||
				 strcmp(j->owner, "none"))) {
		violation(run, CHAOS_INV_CONTRACT, "a post-copy split with exit %d, result %s, "
			  "owner %s (it is exit 3, failed, owner none)", code, j->result, j->owner);
		return;
	}
	if (pc_ignored_fault(run) && code != 0) {
		violation(run, CHAOS_INV_CONTRACT, "a cancel in post-copy must be ignored and the "
			  "migration complete; start exited %d (%s): %.300s", code, j->result,
			  j->error);
		return;
	}
	switch (code) {
	case 0:
		if (strcmp(j->result, "completed") || strcmp(j->owner, "destination"))
			violation(run, CHAOS_INV_CONTRACT, "exit 0 with result %s, owner %s",
				  j->result, j->owner);
		else if (j->verified && !j->match)
			violation(run, CHAOS_INV_NOTHING_LOST, "exit 0, but the switchover digests "
				  "differ");
		/* The deadline holds up to the commit point: past it the source
		 * may not resume, and a COMMIT or RUNNING the network delays
		 * rightly stretches the pause of a migration that completes.
		 * A source the fault froze cannot keep its own deadline. */
		else if (j->has_precommit && j->switchover_ms &&
			 j->precommit_ms > j->switchover_ms + DEADLINE_SLACK_MS + src_frozen_ms(run))
			violation(run, CHAOS_INV_CONTRACT, "the guest was paused %" PRIu64 " ms before "
				  "the commit point, past its switchover deadline of %" PRIu64 " ms, "
				  "and the migration completed", j->precommit_ms, j->switchover_ms);
		if (!run->invariant)
			run->outcome = CHAOS_OUT_COMPLETED;
		break;
	case 1:
		if ((strcmp(j->result, "failed") && strcmp(j->result, "cancelled")) ||
		    strcmp(j->owner, "source"))
			violation(run, CHAOS_INV_CONTRACT, "exit 1 with result %s, owner %s",
				  j->result, j->owner);
		/* Verification caught a destination copy that is not the
		 * source's and rolled back: the VM is safe, but the transfer
		 * lost pages, which only a fault that changes bytes on the wire
		 * may cause (a checksum mode that trusts the link lets it in). */
		else if (strstr(j->error, "RAM digests differ") &&
			 strcmp(chaos_kinds[run->fault.kind].name, "corrupt"))
			violation(run, CHAOS_INV_NOTHING_LOST, "the transfer lost pages: %.300s",
				  j->error);
		if (!run->invariant)
			run->outcome = CHAOS_OUT_ROLLED_BACK;
		break;
	case 3:
		if (j->verified && !j->match)
			violation(run, CHAOS_INV_NOTHING_LOST, "the switchover digests differ "
				  "(exit 3: the destination owns a VM whose RAM is not the "
				  "source's)");
		else if (!strcmp(j->result, "completed"))
			violation(run, CHAOS_INV_CONTRACT, "exit 3 with result completed and "
				  "nothing for an operator to settle");
		if (!run->invariant)
			run->outcome = pc_split_said(j) ? CHAOS_OUT_LOST_IN_POSTCOPY :
				       j->source_copy ? CHAOS_OUT_HELD : CHAOS_OUT_OPERATOR;
		break;
	default:
		violation(run, CHAOS_INV_CONTRACT, "start exited %d (%s): %.300s", code,
			  code == 2 ? "a usage error for options that are valid" : "not a status "
			  "start has", j->error);
	}
}

/*
 * Post-copy broke (exit 3, no copy runs): the VM is split between the
 * hosts, and lost as the product documents, but never silently: each half
 * that survives is held.  Only two faults may do it: an agent's death (the
 * half it had dies with it: lost-in-postcopy) and a link that stayed down
 * past --recover-window (both halves held: split).  Any other fault post-copy
 * must survive, as it must a link down for less than its window.
 */
static void judge_pc_split(struct chaos_run *run, const struct chaos_copies *b,
			   const struct chaos_start_json *j, bool src_dead, bool dst_dead)
{
	const struct chaos_fault *f = &run->fault;
	bool src_gone = f->kills_src && src_dead, dst_gone = f->kills_dst && dst_dead;

	if (strcmp(j->owner, "none")) {
		violation(run, CHAOS_INV_CONTRACT, "post-copy broke (no copy runs), and start names "
			  "the owner %s", j->owner);
		return;
	}
	if (src_gone || dst_gone) {
		unsigned keeper = src_gone ? run->dst : run->src;

		if (src_gone && dst_gone) {
			run->outcome = CHAOS_OUT_LOST_IN_POSTCOPY;
			return;
		}
		if (!b->held_on[keeper])
			violation(run, CHAOS_INV_NEVER_NONE, "the fault killed the %s agent in "
				  "post-copy, and the %s's half of %s is not kept (held) on agent %u",
				  src_gone ? "source" : "destination", src_gone ? "destination" :
				  "source", run->vm, keeper);
		else
			run->outcome = CHAOS_OUT_LOST_IN_POSTCOPY;
		return;
	}
	if (!f->may_split) {
		violation(run, CHAOS_INV_NEVER_NONE, "post-copy broke and the VM is split, under a "
			  "fault it must survive (%s: %.200s; no agent died%s)",
			  chaos_kinds[f->kind].name, f->trigger, f->outage_ms ?
			  ", and the link was back within --recover-window" : "");
		return;
	}
	if (!b->held_on[run->src] || !b->held_on[run->dst]) {
		violation(run, CHAOS_INV_NEVER_NONE, "post-copy's link stayed down past its window, "
			  "and the %s's half of %s is not held", !b->held_on[run->src] ? "source" :
			  "destination", run->vm);
		return;
	}
	run->outcome = CHAOS_OUT_SPLIT;
}

void chaos_judge_copies(struct chaos_run *run, const struct chaos_copies *a,
			const struct chaos_copies *b, const struct chaos_start_json *j,
			bool src_dead, bool dst_dead, uint32_t settle_ms)
{
	const struct chaos_fault *f = &run->fault;
	/* post-copy's rules where the migration got there: start's phases
	 * or its error say so, or the destination holds a half (it holds a
	 * copy only when post-copy broke; start, having lost the source
	 * agent, may know nothing of the phase).  A fault aimed at post-copy
	 * that came sooner (a PAGES frame of round 0) is judged as one of
	 * pre-copy, whose rules hold until COMMIT. */
	bool pc = f->phase == MIG_PHASE_POSTCOPY &&
		  (j->reached_postcopy || pc_split_said(j) || b->held_on[run->dst]);

	if (b->running > 1) {
		violation(run, CHAOS_INV_NEVER_TWO, "%u copies of %s run after the run", b->running,
			  run->vm);
		return;
	}
	if (b->migrating || b->paused) {
		violation(run, CHAOS_INV_BOUNDED, "a copy of %s is still %s after the run",
			  run->vm, b->migrating ? "migrating" : "paused");
		return;
	}
	if (pc && !b->running && run->outcome != CHAOS_OUT_NO_EXIT && !run->invariant &&
	    run->exit_code == 3) {
		judge_pc_split(run, b, j, src_dead, dst_dead);
		return;
	}
	if (!b->running && !b->held) {
		/* in post-copy the VM is on both hosts: a death leaves a half */
		if (pc && ((f->kills_src && src_dead) || (f->kills_dst && dst_dead)) &&
		    run->outcome != CHAOS_OUT_NO_EXIT) {
			violation(run, CHAOS_INV_NEVER_NONE, "the fault killed an agent in "
				  "post-copy, and no half of %s is kept anywhere (exit %d)", run->vm,
				  run->exit_code);
			return;
		}
		if ((f->kills_src && src_dead) || (f->kills_dst && dst_dead)) {
			/* the only copy was where the fault killed its agent: like a host
			 * crash, nothing could keep it; the start must say so (exit 3),
			 * unless it had handed the VM over (exit 0) before the death */
			if (run->outcome != CHAOS_OUT_NO_EXIT && run->exit_code != 3 &&
			    run->exit_code != 0)
				violation(run, CHAOS_INV_CONTRACT, "the VM died with agent %u, and "
					  "start exited %d, not 3", src_dead ? run->src : run->dst,
					  run->exit_code);
			else
				run->outcome = CHAOS_OUT_LOST_WITH_AGENT;
			return;
		}
		violation(run, CHAOS_INV_NEVER_NONE, "no copy of %s runs or is held anywhere, and "
			  "no agent it was on died (exit %d)", run->vm, run->exit_code);
		return;
	}
	if (b->running) {
		if (b->errors)
			violation(run, CHAOS_INV_NOTHING_LOST, "the running copy on agent %u counts "
				  "%" PRIu64 " self-check errors", b->run_at, b->errors);
		else if (a->running && a->run_at == b->run_at && b->passes <= a->passes)
			violation(run, CHAOS_INV_NOTHING_LOST, "the running copy on agent %u made no "
				  "progress in %u ms (passes %" PRIu64 ")", b->run_at, settle_ms,
				  b->passes);
	}
	if (run->outcome == CHAOS_OUT_NO_EXIT || run->invariant)
		return;
	if (run->outcome == CHAOS_OUT_LOST_IN_POSTCOPY) {
		/* start said split, yet one copy runs.  On the destination: it
		 * placed every page while the source could not hear so (a
		 * RUNNING kind 2 lost with the link), and the source, not
		 * knowing, keeps its half held: exit 3 for an operator, nothing
		 * lost.  On the source: a half was resumed that must be held. */
		if (b->run_at != run->dst) {
			violation(run, CHAOS_INV_CONTRACT, "start says post-copy split the VM, and "
				  "it runs on agent %u, not the destination", b->run_at);
			return;
		}
		run->outcome = j->source_copy ? CHAOS_OUT_HELD : CHAOS_OUT_OPERATOR;
	}
	switch (run->exit_code) {
	case 0:
		if (!b->running || b->run_at != run->dst)
			violation(run, CHAOS_INV_CONTRACT, "exit 0, but the VM %s", b->running ?
				  "runs on the source" : "does not run on the destination");
		break;
	case 1:
		if (!b->running || b->run_at != run->src || b->held)
			violation(run, CHAOS_INV_CONTRACT, "exit 1, but the VM %s", !b->running ?
				  "does not run on the source" : b->held ? "is held somewhere" :
				  "runs on the destination");
		break;
	case 3:
		if (b->held && (!j->source_copy || strcmp(j->copy_vm, run->vm)))
			violation(run, CHAOS_INV_CONTRACT, "exit 3 with a held copy on agent %u, "
				  "but the JSON names no source_copy for it", b->held_at);
		else if (b->held && b->held_at != run->src)
			violation(run, CHAOS_INV_CONTRACT, "the held copy is on agent %u, not the "
				  "source", b->held_at);
		break;
	}
}

void chaos_judge_downtime(struct chaos_run *run, uint64_t json_ms, uint64_t journal_ms,
			  uint64_t verify_ms, uint64_t frozen_ms)
{
	uint64_t paused = journal_ms > verify_ms ? journal_ms - verify_ms : 0;
	uint64_t slack = 50 + paused / 2;

	/* a source frozen by SIGSTOP while its vCPUs were still "running"
	 * paused the guest for that long, and its journal cannot see it */
	if (json_ms > paused + frozen_ms + slack || json_ms + slack < paused)
		violation(run, CHAOS_INV_CONTRACT, "downtime_ms says %" PRIu64 " ms; the journals "
			  "show the guest paused %" PRIu64 " ms (verification's %" PRIu64 " ms left "
			  "out)", json_ms, paused, verify_ms);
}

/* ---- a libvirt domain's run (docs/chaos.md, "libvirt domains") ---- */

static const char *lv_word(uint32_t s)
{
	switch (s) {
	case MIG_LV_STATE_ABSENT: return "absent";
	case MIG_LV_STATE_RUNNING: return "running";
	case MIG_LV_STATE_PAUSED: return "paused";
	case MIG_LV_STATE_SHUTOFF: return "shutoff";
	case MIG_LV_STATE_OTHER: return "other";
	default: return "unknown (its agent did not answer)";
	}
}

/* What the JSON says of a host against what the runner saw there: the
 * JSON's word is from the moment start asked, so only "running" or not is
 * compared (a source's transient copy may still be going away). */
static bool lv_json_agrees(const char *said, uint32_t seen)
{
	return !strcmp(said, "running") == (seen == MIG_LV_STATE_RUNNING);
}

static void lv_contract(struct chaos_run *run, int exit_code, const struct chaos_lv_json *j,
			const struct chaos_lv_seen *seen)
{
	bool s_run = seen->src == MIG_LV_STATE_RUNNING, d_run = seen->dst == MIG_LV_STATE_RUNNING;
	const char *want_result, *want_owner;

	switch (exit_code) {
	case 0:
		want_result = "completed";
		want_owner = "destination";
		run->outcome = CHAOS_OUT_COMPLETED;
		break;
	case 1:
		want_result = strcmp(j->result, "cancelled") ? "failed" : "cancelled";
		want_owner = "source";
		run->outcome = CHAOS_OUT_ROLLED_BACK;
		break;
	case 3:
		/* an operator must look: no owner, or a result that disagrees
		 * with where the domain is (failed, yet on the destination) */
		run->outcome = CHAOS_OUT_OPERATOR;
		if (!strcmp(j->owner, "none"))
			return;
		if (strcmp(j->owner, "destination") || !strcmp(j->result, "completed")) {
			violation(run, CHAOS_INV_CONTRACT, "start exited 3 with result %s and owner "
				  "%s: exit 3 names no owner, or a destination that a failed "
				  "migration left the domain on", j->result, j->owner);
			return;
		}
		if (!d_run || s_run)
			violation(run, CHAOS_INV_CONTRACT, "start exited 3 naming the destination "
				  "the owner, but the domain is %s on the source and %s on the "
				  "destination", lv_word(seen->src), lv_word(seen->dst));
		return;
	default:
		violation(run, CHAOS_INV_CONTRACT, "start exited %d for valid options: %.300s",
			  exit_code, j->error);
		return;
	}
	if (strcmp(j->result, want_result) || strcmp(j->owner, want_owner)) {
		violation(run, CHAOS_INV_CONTRACT, "start exited %d with result %s and owner %s "
			  "(exit %d means %s, owner %s)", exit_code, j->result, j->owner, exit_code,
			  want_result, want_owner);
		return;
	}
	if (exit_code == 0 ? !d_run || s_run : !s_run || d_run) {
		violation(run, CHAOS_INV_CONTRACT, "start exited %d (owner %s), but the domain is "
			  "%s on the source and %s on the destination", exit_code, j->owner,
			  lv_word(seen->src), lv_word(seen->dst));
		return;
	}
	if (!lv_json_agrees(j->src_state, seen->src) || !lv_json_agrees(j->dst_state, seen->dst))
		violation(run, CHAOS_INV_CONTRACT, "start's JSON says the domain is %s on the "
			  "source and %s on the destination; it is %s and %s", j->src_state,
			  j->dst_state, lv_word(seen->src), lv_word(seen->dst));
}

void chaos_lv_judge(struct chaos_run *run, int exit_code, bool killed_by_runner, bool json_ok,
		    const char *why, const struct chaos_lv_json *j, const struct chaos_lv_seen *seen)
{
	bool s_run = seen->src == MIG_LV_STATE_RUNNING, d_run = seen->dst == MIG_LV_STATE_RUNNING;

	run->exit_code = killed_by_runner ? -1 : exit_code;
	str_copy(run->result, sizeof(run->result), j->result);
	str_copy(run->owner, sizeof(run->owner), j->owner);
	if (s_run && d_run)
		violation(run, CHAOS_INV_NEVER_TWO, "the domain runs on the source and on the "
			  "destination after the run");
	if (!s_run && !d_run && (killed_by_runner || exit_code != 3))
		violation(run, CHAOS_INV_NEVER_NONE, "the domain runs nowhere after the run (%s on "
			  "the source, %s on the destination), and %s", lv_word(seen->src),
			  lv_word(seen->dst), killed_by_runner ? "no start was left to say so" :
			  "start did not exit 3");
	if (killed_by_runner) {
		if (!run->invariant)
			run->outcome = CHAOS_OUT_NO_EXIT;
		return;
	}
	if (exit_code < 0) {
		violation(run, CHAOS_INV_CONTRACT, "start was ended by a signal the runner did not "
			  "send");
		return;
	}
	if (!json_ok) {
		violation(run, CHAOS_INV_CONTRACT, "%s", why);
		return;
	}
	lv_contract(run, exit_code, j, seen);
	if (run->invariant)
		run->outcome = CHAOS_OUT_VIOLATION;
}
