// SPDX-License-Identifier: MIT
/*
 * Chaos mode's pure parts: the fault catalogue (chaos/catalogue.c), fault
 * plans (chaos/fault-plan.c) and the runner's verdicts (chaos/judge.c).
 * No KVM, no sockets.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <migrate/chaos-run.h>
#include <migrate/chaos.h>
#include <migrate/engine.h>
#include <migrate/fault.h>
#include <migrate/wire.h>

static uint64_t all_kinds(void)
{
	return ~0ULL >> (64 - chaos_nr_kinds);
}

/* A run's fault is a function of (seed, run, kinds) alone: what makes
 * --replay replay exactly that run. */
Test(catalogue, a_fault_is_a_function_of_seed_and_run)
{
	struct chaos_fault a, b, c;
	unsigned differ = 0;

	for (uint64_t run = 0; run < 300; run++) {
		chaos_fault_make(42, run, all_kinds(), "vm", &a);
		chaos_fault_make(42, run, all_kinds(), "vm", &b);
		cr_assert_eq(memcmp(&a, &b, sizeof(a)), 0, "run %llu made twice differs",
			     (unsigned long long)run);
		chaos_fault_make(43, run, all_kinds(), "vm", &c);
		differ += memcmp(&a, &c, sizeof(a)) != 0;
	}
	cr_assert_gt(differ, 250, "another seed changed only %u of 300 runs", differ);
}

/* Every kind comes up, in every phase it applies to (post-copy's too),
 * within five rounds of the kinds; a mask keeps to its kinds. */
Test(catalogue, every_kind_in_every_phase)
{
	static bool seen[64][_MIG_PHASE_MAX];
	struct chaos_fault f;
	uint64_t mask;
	struct mig_error err = { 0 };

	for (uint64_t run = 0; run < 5 * chaos_nr_kinds; run++) {
		chaos_fault_make(7, run, all_kinds(), "vm", &f);
		cr_assert_lt(f.kind, chaos_nr_kinds);
		cr_assert(chaos_kinds[f.kind].phases & CHAOS_PH(f.phase),
			  "%s aimed at %s, a phase it does not apply to", chaos_kinds[f.kind].name,
			  mig_phase_to_string(f.phase));
		cr_assert(f.trigger[0], "%s has no trigger in words", chaos_kinds[f.kind].name);
		seen[f.kind][f.phase] = true;
	}
	for (unsigned k = 0; k < chaos_nr_kinds; k++)
		for (unsigned p = MIG_PHASE_SETUP; p < _MIG_PHASE_MAX; p++)
			cr_assert_eq(seen[k][p], !!(chaos_kinds[k].phases & CHAOS_PH(p)),
				     "%s in %s", chaos_kinds[k].name, mig_phase_to_string(p));
	cr_assert_eq(chaos_faults_parse("process", &mask, &err), 0);
	for (uint64_t run = 0; run < 100; run++) {
		chaos_fault_make(7, run, mask, "vm", &f);
		cr_assert_eq(chaos_kinds[f.kind].cls, CHAOS_PROCESS);
	}
}

/* Every plan the catalogue makes is one an agent takes, for the VM named. */
Test(catalogue, plans_pass_the_agents_check)
{
	struct chaos_fault f;

	for (uint64_t run = 0; run < 20 * chaos_nr_kinds; run++) {
		struct mig_fault_plan *p[2];

		chaos_fault_make(99, run, all_kinds(), "the-vm", &f);
		p[0] = &f.src_plan;
		p[1] = &f.dst_plan;
		for (int k = 0; k < 2; k++) {
			struct mig_error err = { 0 };

			if (!p[k]->action)
				continue;
			cr_assert_str_eq(p[k]->vm, "the-vm");
			cr_assert_eq(mig_fault_plan_check(p[k], &err), 0, "%s: %s",
				     chaos_kinds[f.kind].name, err.msg);
		}
		cr_assert_eq(f.kills_src, f.src_plan.action == MIG_FAULT_A_KILL);
		cr_assert_eq(f.kills_dst, f.dst_plan.action == MIG_FAULT_A_KILL);
	}
}

/* A libvirt domain's faults: only the kinds that apply, aimed at setup,
 * precopy or stop_copy, their agents' and network triggers frames of the
 * tunnel; without agents that take plans, the runner's three only. */
Test(catalogue, a_libvirt_domains_faults_aim_at_the_tunnel)
{
	static const char *const runner[] = { "kill-start", "stop-start", "cancel" };
	uint64_t lv = chaos_lv_mask(all_kinds(), true), own = chaos_lv_mask(all_kinds(), false);
	unsigned kinds = 0, net = 0, agent = 0;
	struct chaos_fault f, g;

	for (unsigned k = 0; k < chaos_nr_kinds; k++)
		kinds += (lv >> k) & 1;
	cr_assert_eq(kinds, 17, "%u kinds apply to a libvirt domain", kinds);
	cr_assert_eq(__builtin_popcountll(own), 3);
	for (unsigned k = 0; k < chaos_nr_kinds; k++) {
		bool mine = false;

		for (unsigned i = 0; i < 3; i++)
			mine |= !strcmp(chaos_kinds[k].name, runner[i]);
		cr_assert_eq(!!((own >> k) & 1), mine, "%s", chaos_kinds[k].name);
	}
	for (uint64_t run = 0; run < 10 * 17; run++) {
		const struct mig_fault_plan *p[2] = { &f.src_plan, &f.dst_plan };

		chaos_lv_fault_make(7, run, all_kinds(), "web1", &f);
		chaos_lv_fault_make(7, run, all_kinds(), "web1", &g);
		cr_assert_eq(memcmp(&f, &g, sizeof(f)), 0, "run %llu made twice differs",
			     (unsigned long long)run);
		cr_assert((lv >> f.kind) & 1, "%s is not a libvirt fault", chaos_kinds[f.kind].name);
		cr_assert(f.tunnel);
		cr_assert(f.phase >= MIG_PHASE_SETUP && f.phase <= MIG_PHASE_STOP_COPY, "%s at %s",
			  chaos_kinds[f.kind].name, mig_phase_to_string(f.phase));
		cr_assert_eq(f.link, 0);
		cr_assert_eq(f.lab_extra[0], '\0');
		for (int k = 0; k < 2; k++) {
			struct mig_error err = { 0 };

			if (!p[k]->action)
				continue;
			cr_assert_str_eq(p[k]->vm, "web1");
			cr_assert_eq(mig_fault_plan_check(p[k], &err), 0, "%s", err.msg);
			if (p[k]->action == MIG_FAULT_A_NET) {
				net++;
				cr_assert(p[k]->net_frame_type == 0 ||
					  p[k]->net_frame_type == MIG_FRAME_STREAM_HELLO ||
					  p[k]->net_frame_type == MIG_FRAME_TUNNEL_DATA ||
					  p[k]->net_frame_type == MIG_FRAME_TUNNEL_END, "%s: %s",
					  chaos_kinds[f.kind].name, f.trigger);
			} else {
				agent++;
				cr_assert(p[k]->frame_type == MIG_FRAME_TUNNEL_DATA ||
					  p[k]->frame_type == MIG_FRAME_TUNNEL_END, "%s: %s",
					  chaos_kinds[f.kind].name, f.trigger);
				cr_assert(strstr(f.trigger, "channel"), "%s", f.trigger);
			}
		}
	}
	cr_assert_gt(net, 0);
	cr_assert_gt(agent, 0);
}

/* Post-copy's faults: the link's, the processes' and the operator's, aimed
 * at the phase with --converge postcopy and a cap; their triggers points
 * that come only in post-copy; a short --recover-window for the link's,
 * and a split allowed only when the outage outlasts it.  Runs aimed at
 * other phases stay pre-copy runs. */
Test(catalogue, postcopy_faults)
{
	static const char *const pc_kinds[] = {
		"reset", "stall", "delay", "partition", "link-down", "link-drop", "link-reset",
		"kill-src", "kill-dst", "stop-src", "stop-dst", "kill-start", "stop-start",
		"cancel", "destroy",
	};
	static bool seen[64];
	unsigned splits = 0, recovers = 0, nets = 0, relay = 0, agents = 0;
	uint64_t pc = chaos_phase_mask(all_kinds(), CHAOS_PH_PC);
	struct chaos_fault f;

	cr_assert_eq(__builtin_popcountll(pc), sizeof(pc_kinds) / sizeof(pc_kinds[0]));
	for (unsigned i = 0; i < sizeof(pc_kinds) / sizeof(pc_kinds[0]); i++) {
		uint64_t m;
		struct mig_error err = { 0 };

		cr_assert_eq(chaos_faults_parse(pc_kinds[i], &m, &err), 0);
		cr_assert(pc & m, "%s applies to post-copy", pc_kinds[i]);
	}
	for (uint64_t run = 0; run < 40 * sizeof(pc_kinds) / sizeof(pc_kinds[0]); run++) {
		const struct mig_fault_plan *p[2] = { &f.src_plan, &f.dst_plan };
		const struct chaos_kind *k;

		chaos_fault_make_in(5, run, all_kinds(), CHAOS_PH_PC, "pv", &f);
		k = &chaos_kinds[f.kind];
		seen[f.kind] = true;
		cr_assert_eq(f.phase, MIG_PHASE_POSTCOPY, "%s at %s", k->name,
			     mig_phase_to_string(f.phase));
		cr_assert(k->cls == CHAOS_NETWORK || k->cls == CHAOS_PROCESS ||
			  k->cls == CHAOS_OPERATOR, "%s", k->name);
		cr_assert(strstr(f.start_extra, "--converge postcopy --max-bandwidth "),
			  "%s: %s", k->name, f.start_extra);
		cr_assert_eq(f.lab_extra[0], '\0');
		/* a short window: a dead or frozen peer is waited for that long */
		nets += k->cls == CHAOS_NETWORK;
		cr_assert(f.recover_ms >= 1000 && f.recover_ms <= 3000, "%u", f.recover_ms);
		cr_assert(strstr(f.start_extra, "--recover-window "), "%s", f.start_extra);
		cr_assert(strstr(f.trigger, "--recover-window"), "%s", f.trigger);
		cr_assert_eq(f.may_split, f.outage_ms &&
			     f.outage_ms + CHAOS_PC_RETRY_MS > f.recover_ms,
			     "%s: outage %u, window %u", k->name, f.outage_ms, f.recover_ms);
		if (f.link)
			cr_assert_eq(f.outage_ms, f.link_ms);
		if (f.src_plan.action == MIG_FAULT_A_STOP || f.dst_plan.action == MIG_FAULT_A_STOP)
			cr_assert_eq(f.outage_ms, f.src_plan.ms + f.dst_plan.ms);
		if (f.kills_src || f.kills_dst || f.start_signal || f.cancel_op || f.destroy_src ||
		    f.destroy_dst)
			cr_assert(!f.may_split, "%s", k->name);
		splits += f.may_split;
		recovers += f.outage_ms && !f.may_split;
		for (int s = 0; s < 2; s++) {
			struct mig_error err = { 0 };

			if (!p[s]->action)
				continue;
			cr_assert_eq(mig_fault_plan_check(p[s], &err), 0, "%s", err.msg);
			if (p[s]->action == MIG_FAULT_A_NET) {
				/* the relay: page requests to the source on stream 1,
				 * or a PAGES frame past round 0's on stream 1 */
				relay++;
				cr_assert(s == 1);
				cr_assert_eq(p[s]->net_stream, 1, "%s", f.trigger);
				cr_assert((p[s]->net_frame_type == MIG_FRAME_PAGE_REQUEST &&
					   p[s]->net_to_source) ||
					  (p[s]->net_frame_type == MIG_FRAME_PAGES &&
					   !p[s]->net_to_source && p[s]->net_frame >= 24), "%s",
					  f.trigger);
				continue;
			}
			/* an agent's point of post-copy alone: the phase changes into
			 * and out of it, RUNNING kind 2, PAGES past round 0's */
			agents++;
			if (p[s]->point == MIG_FAULT_PHASE + 1)
				cr_assert(p[s]->to == MIG_PHASE_POSTCOPY || p[s]->to == MIG_PHASE_DONE,
					  "%s", f.trigger);
			else if (p[s]->frame_type == MIG_FRAME_RUNNING)
				cr_assert(p[s]->nth == 2 && p[s]->stream == 0, "%s", f.trigger);
			else
				cr_assert(p[s]->frame_type == MIG_FRAME_PAGES && p[s]->nth >= 24 &&
					  p[s]->stream == 1, "%s", f.trigger);
		}
	}
	for (unsigned i = 0; i < sizeof(pc_kinds) / sizeof(pc_kinds[0]); i++) {
		uint64_t m;
		struct mig_error err = { 0 };

		chaos_faults_parse(pc_kinds[i], &m, &err);
		cr_assert(seen[__builtin_ctzll(m)], "%s never aimed at post-copy", pc_kinds[i]);
	}
	cr_assert_gt(nets, 0);
	cr_assert_gt(relay, 0);
	cr_assert_gt(agents, 0);
	cr_assert_gt(splits, 0, "no link fault outlasts its window");
	cr_assert_gt(recovers, 0, "no link fault comes back within its window");
	/* a run aimed elsewhere is a pre-copy run */
	for (uint64_t run = 0; run < 4 * chaos_nr_kinds; run++) {
		chaos_fault_make_in(5, run, all_kinds(), CHAOS_PH_ALL, "vm", &f);
		cr_assert_neq(f.phase, MIG_PHASE_POSTCOPY);
		cr_assert_null(strstr(f.start_extra, "postcopy"), "%s", f.start_extra);
		cr_assert_eq(f.recover_ms, 0);
		cr_assert(!f.may_split);
	}
}

Test(catalogue, phases_parse)
{
	struct mig_error err = { 0 };
	unsigned ph;

	cr_assert_eq(chaos_phases_parse("postcopy", &ph, &err), 0);
	cr_assert_eq(ph, CHAOS_PH_PC);
	cr_assert_eq(chaos_phases_parse("setup,commit", &ph, &err), 0);
	cr_assert_eq(ph, CHAOS_PH(MIG_PHASE_SETUP) | CHAOS_PH(MIG_PHASE_COMMIT));
	cr_assert_eq(chaos_phases_parse("done", &ph, &err), -EINVAL, "done is no phase to aim at");
	cr_assert(strstr(err.msg, "'done'"), "%s", err.msg);
	memset(&err, 0, sizeof(err));
	cr_assert_eq(chaos_phases_parse(",", &ph, &err), -EINVAL);
	/* kinds that apply to none of the phases are left out */
	cr_assert_eq(chaos_phase_mask(all_kinds(), CHAOS_PH(MIG_PHASE_SETUP) |
				      CHAOS_PH_ALL), chaos_phase_mask(all_kinds(), CHAOS_PH_ALL));
	cr_assert_eq(chaos_phase_mask(all_kinds(), 0), all_kinds());
}

Test(catalogue, faults_parse)
{
	struct mig_error err = { 0 };
	uint64_t m;

	cr_assert_eq(chaos_faults_parse("all", &m, &err), 0);
	cr_assert_eq(m, all_kinds());
	cr_assert_eq(chaos_faults_parse("kill-src,cancel", &m, &err), 0);
	cr_assert_eq(__builtin_popcountll(m), 2);
	cr_assert_eq(chaos_faults_parse("network,kill-src", &m, &err), 0);
	for (unsigned k = 0; k < chaos_nr_kinds; k++)
		cr_assert_eq(!!(m & (1ULL << k)), chaos_kinds[k].cls == CHAOS_NETWORK ||
			     !strcmp(chaos_kinds[k].name, "kill-src"), "%s", chaos_kinds[k].name);
	cr_assert_eq(chaos_faults_parse("kill-src,nosuch", &m, &err), -EINVAL);
	cr_assert(strstr(err.msg, "'nosuch'"), "%s", err.msg);
	memset(&err, 0, sizeof(err));
	cr_assert_eq(chaos_faults_parse(",", &m, &err), -EINVAL);
}

/* ---- fault plans ---- */

static struct mig_fault_plan plan(uint32_t action, uint32_t point)
{
	struct mig_fault_plan p = { .action = action, .point = point, .nth = 1, .err = EIO,
				    .ms = 10, .stage = -1, .dev_class = -1, .from = -1, .to = -1,
				    .frame_type = -1, .stream = -1 };

	strcpy(p.vm, "vm");
	return p;
}

Test(plan, check_refuses_what_an_agent_cannot_do)
{
	struct mig_fault_plan p;
	struct mig_error err = { 0 };

	p = plan(MIG_FAULT_A_ERROR, MIG_FAULT_PHASE + 1);
	cr_assert_eq(mig_fault_plan_check(&p, &err), 0, "%s", err.msg);
	p.err = 0;
	cr_assert_eq(mig_fault_plan_check(&p, &err), -EINVAL);
	cr_assert(strstr(err.msg, "errno"), "%s", err.msg);
	memset(&err, 0, sizeof(err));
	p = plan(MIG_FAULT_A_KILL, MIG_FAULT_PHASE + 2);
	cr_assert_eq(mig_fault_plan_check(&p, &err), -EINVAL, "a point past the last");
	memset(&err, 0, sizeof(err));
	p = plan(MIG_FAULT_A_KILL, 1);
	p.nth = 0;
	cr_assert_eq(mig_fault_plan_check(&p, &err), -EINVAL, "nth 0");
	memset(&err, 0, sizeof(err));
	p = plan(MIG_FAULT_A_STOP, 1);
	p.ms = 0;
	cr_assert_eq(mig_fault_plan_check(&p, &err), -EINVAL, "a stop of 0 ms");
	memset(&err, 0, sizeof(err));
	p = plan(_MIG_FAULT_A_END, 1);
	cr_assert_eq(mig_fault_plan_check(&p, &err), -EINVAL, "an unknown action");
	memset(&err, 0, sizeof(err));
	p = plan(MIG_FAULT_A_KILL, 1);
	memset(p.vm, 'x', sizeof(p.vm));
	cr_assert_eq(mig_fault_plan_check(&p, &err), -EINVAL, "a name without its NUL");
	memset(&err, 0, sizeof(err));
	p = plan(MIG_FAULT_A_NET, 0);
	cr_assert_eq(mig_fault_plan_check(&p, &err), -EINVAL, "a net fault without its toxic");
}

Test(plan, matches_its_points_only)
{
	static const bool arcs[4] = { 0 };
	static const char *const states[] = { "a", "b" };
	struct mig_device_class vfio = { .id = MIG_DEV_VFIO, .name = "vfio", .nr_states = 2,
					 .state_names = states, .arcs = arcs };
	struct mig_device_class vcpu = vfio;
	struct mig_device dv = { .cls = &vfio }, dc = { .cls = &vcpu };
	struct mig_fault_point step = { .kind = MIG_FAULT_DEVICE_STEP, .stage = MIG_STAGE_SAVE,
					.dev = &dv, .from = 0, .to = 1 };
	struct mig_fault_point send = { .kind = MIG_FAULT_FRAME_SEND, .frame_type = MIG_FRAME_PAGES,
					.stream = 2, .seq = 9 };
	struct mig_fault_point ph = { .kind = MIG_FAULT_PHASE, .from = MIG_PHASE_PRECOPY,
				      .to = MIG_PHASE_STOP_COPY };
	struct mig_fault_plan p;
	char words[160];

	vcpu.id = MIG_DEV_VCPU;
	p = plan(MIG_FAULT_A_ERROR, MIG_FAULT_DEVICE_STEP + 1);
	cr_assert(mig_fault_plan_matches(&p, &step));
	cr_assert_not(mig_fault_plan_matches(&p, &send), "another kind of point");
	p.stage = MIG_STAGE_LOAD;
	cr_assert_not(mig_fault_plan_matches(&p, &step), "another stage");
	p.stage = MIG_STAGE_SAVE;
	p.dev_class = MIG_DEV_VFIO;
	cr_assert(mig_fault_plan_matches(&p, &step));
	step.dev = &dc;
	cr_assert_not(mig_fault_plan_matches(&p, &step), "another class");
	step.dev = &dv;
	p = plan(MIG_FAULT_A_ERROR, MIG_FAULT_FRAME_SEND + 1);
	cr_assert(mig_fault_plan_matches(&p, &send), "any stream, any type");
	p.stream = 1;
	cr_assert_not(mig_fault_plan_matches(&p, &send), "another stream");
	p.stream = 2;
	p.frame_type = MIG_FRAME_DEVICE_DATA;
	cr_assert_not(mig_fault_plan_matches(&p, &send), "another frame type");
	p.frame_type = MIG_FRAME_PAGES;
	cr_assert(mig_fault_plan_matches(&p, &send));
	p = plan(MIG_FAULT_A_KILL, MIG_FAULT_PHASE + 1);
	p.to = MIG_PHASE_COMMIT;
	cr_assert_not(mig_fault_plan_matches(&p, &ph), "another phase");
	p.to = MIG_PHASE_STOP_COPY;
	cr_assert(mig_fault_plan_matches(&p, &ph));
	mig_fault_point_describe(&send, words, sizeof(words));
	cr_assert_str_eq(words, "sending frame 9 (PAGES) on stream 2");
	mig_fault_point_describe(&step, words, sizeof(words));
	cr_assert_str_eq(words, "device step vfio 0 save a->b");
}

/* ---- the verdicts ---- */

static struct chaos_run a_run(void)
{
	struct chaos_run r = { .src = 0, .dst = 1 };

	strcpy(r.vm, "vm");
	return r;
}

static struct chaos_start_json json(const char *result, const char *owner)
{
	struct chaos_start_json j = { .verified = true, .match = true };

	strcpy(j.result, result);
	strcpy(j.owner, owner);
	return j;
}

static struct chaos_copies running_on(unsigned agent, uint64_t passes)
{
	return (struct chaos_copies){ .running = 1, .run_at = agent, .passes = passes };
}

/* exit, JSON and copies together, as the runner judges a run */
static struct chaos_run judge(int code, const struct chaos_start_json *j,
			      const struct chaos_copies *b)
{
	struct chaos_run r = a_run();
	struct chaos_copies a = *b;

	a.passes = b->passes ? b->passes - 1 : 0;
	chaos_judge_exit(&r, code, 0, false, true, "", j);
	chaos_judge_copies(&r, &a, b, j, false, false, 300);
	return r;
}

Test(judge, the_contract_each_way)
{
	struct chaos_start_json done = json("completed", "destination"),
				back = json("failed", "source"), held = json("failed", "none");
	struct chaos_copies on_dst = running_on(1, 10), on_src = running_on(0, 10),
			    kept = { .held = 1, .held_at = 0 };
	struct mig_error err = { 0 };
	struct chaos_run r;
	uint64_t corrupt;

	r = judge(0, &done, &on_dst);
	cr_assert_eq(r.invariant, 0, "%s", r.detail);
	cr_assert_eq(r.outcome, CHAOS_OUT_COMPLETED);
	r = judge(0, &done, &on_src);
	cr_assert_eq(r.invariant, CHAOS_INV_CONTRACT, "exit 0 with the VM on the source");
	r = judge(1, &back, &on_src);
	cr_assert_eq(r.invariant, 0, "%s", r.detail);
	cr_assert_eq(r.outcome, CHAOS_OUT_ROLLED_BACK);
	r = judge(1, &back, &on_dst);
	cr_assert_eq(r.invariant, CHAOS_INV_CONTRACT, "exit 1 with the VM on the destination");
	strcpy(back.error, "RAM digests differ at switchover: the destination's copy is not "
	       "the source's (...)");
	r = judge(1, &back, &on_src);
	cr_assert_eq(r.invariant, CHAOS_INV_NOTHING_LOST, "verification caught lost pages");
	cr_assert_eq(chaos_faults_parse("corrupt", &corrupt, &err), 0);
	r = a_run();
	r.fault.kind = (unsigned)__builtin_ctzll(corrupt);
	chaos_judge_exit(&r, 1, 0, false, true, "", &back);
	cr_assert_eq(r.invariant, 0, "a flipped byte is why: %s", r.detail);
	back.error[0] = '\0';
	r = judge(1, &done, &on_src);
	cr_assert_eq(r.invariant, CHAOS_INV_CONTRACT, "exit 1 saying completed");
	r = judge(0, &back, &on_dst);
	cr_assert_eq(r.invariant, CHAOS_INV_CONTRACT, "exit 0 saying owner source");
	held.source_copy = true;
	strcpy(held.copy_vm, "vm");
	r = judge(3, &held, &kept);
	cr_assert_eq(r.invariant, 0, "%s", r.detail);
	cr_assert_eq(r.outcome, CHAOS_OUT_HELD);
	held.source_copy = false;
	r = judge(3, &held, &kept);
	cr_assert_eq(r.invariant, CHAOS_INV_CONTRACT, "a held copy the JSON does not name");
	r = judge(2, &back, &on_src);
	cr_assert_eq(r.invariant, CHAOS_INV_CONTRACT, "exit 2 for valid options");
	r = judge(3, &done, &on_dst);
	cr_assert_eq(r.invariant, CHAOS_INV_CONTRACT, "exit 3 with nothing to settle");
	done.has_downtime = done.has_precommit = true;
	done.switchover_ms = 5000;
	done.downtime_ms = 5922;
	done.precommit_ms = 14;
	r = judge(0, &done, &on_dst);
	cr_assert_eq(r.invariant, 0, "a COMMIT the network delayed: %s", r.detail);
	done.precommit_ms = 5400;
	r = judge(0, &done, &on_dst);
	cr_assert_eq(r.invariant, CHAOS_INV_CONTRACT, "paused past the deadline before COMMIT");
	r = a_run();
	r.fired = true;
	r.fault.src_plan.action = MIG_FAULT_A_STOP;
	r.fault.src_plan.ms = 6000;
	chaos_judge_exit(&r, 0, 0, false, true, "", &done);
	cr_assert_eq(r.invariant, 0, "a source the fault froze: %s", r.detail);
	done.downtime_ms = 40;
	done.precommit_ms = 20;
	done.match = false;
	r = judge(0, &done, &on_dst);
	cr_assert_eq(r.invariant, CHAOS_INV_NOTHING_LOST, "digests that differ");
	r = judge(3, &done, &on_dst);
	cr_assert_eq(r.invariant, CHAOS_INV_NOTHING_LOST, "digests that differ, exit 3");
}

Test(judge, never_two_never_none_nothing_lost)
{
	struct chaos_start_json done = json("completed", "destination"), lost = json("failed", "none");
	struct chaos_copies two = { .running = 2, .run_at = 1 }, none = { 0 },
			    dirty = running_on(1, 10), stuck = running_on(1, 10);
	struct chaos_run r;

	r = judge(0, &done, &two);
	cr_assert_eq(r.invariant, CHAOS_INV_NEVER_TWO);
	r = judge(3, &lost, &none);
	cr_assert_eq(r.invariant, CHAOS_INV_NEVER_NONE, "no copy and nobody died");
	dirty.errors = 3;
	r = judge(0, &done, &dirty);
	cr_assert_eq(r.invariant, CHAOS_INV_NOTHING_LOST, "self-check errors");
	/* the same passes a settle period apart: the guest does not run */
	r = a_run();
	chaos_judge_exit(&r, 0, 0, false, true, "", &done);
	chaos_judge_copies(&r, &stuck, &stuck, &done, false, false, 300);
	cr_assert_eq(r.invariant, CHAOS_INV_NOTHING_LOST, "no progress");
	/* the VM died with the agent the fault killed: exit 3 says so */
	r = a_run();
	r.fault.kills_src = true;
	chaos_judge_exit(&r, 3, 0, false, true, "", &lost);
	chaos_judge_copies(&r, &none, &none, &lost, true, false, 300);
	cr_assert_eq(r.invariant, 0, "%s", r.detail);
	cr_assert_eq(r.outcome, CHAOS_OUT_LOST_WITH_AGENT);
	/* ... and exit 1 (the VM runs on the source) would be a lie */
	r = a_run();
	r.fault.kills_src = true;
	lost = json("failed", "source");
	chaos_judge_exit(&r, 1, 0, false, true, "", &lost);
	chaos_judge_copies(&r, &none, &none, &lost, true, false, 300);
	cr_assert_eq(r.invariant, CHAOS_INV_CONTRACT);
	/* a killed agent that was not the fault's does not excuse a loss */
	r = a_run();
	r.fault.kills_src = true;
	chaos_judge_exit(&r, 3, 0, false, true, "", &lost);
	chaos_judge_copies(&r, &none, &none, &lost, false, true, 300);
	cr_assert_eq(r.invariant, CHAOS_INV_NEVER_NONE);
}

Test(judge, the_start_process_itself)
{
	struct chaos_start_json j = json("completed", "destination");
	struct chaos_run r = a_run();

	chaos_judge_exit(&r, -1, 9, true, false, "", &j);
	cr_assert_eq(r.invariant, 0);
	cr_assert_eq(r.outcome, CHAOS_OUT_NO_EXIT);
	r = a_run();
	chaos_judge_exit(&r, -1, 11, false, false, "", &j);
	cr_assert_eq(r.invariant, CHAOS_INV_CONTRACT, "a crash nobody caused");
	r = a_run();
	chaos_judge_exit(&r, 0, 0, false, false, "start printed more than one JSON object", &j);
	cr_assert_eq(r.invariant, CHAOS_INV_CONTRACT);
	cr_assert(strstr(r.detail, "more than one"), "%s", r.detail);
}

Test(judge, downtime_against_the_journals)
{
	struct chaos_run r = a_run();

	chaos_judge_downtime(&r, 3, 5, 0, 0);
	cr_assert_eq(r.invariant, 0, "%s", r.detail);
	chaos_judge_downtime(&r, 40, 20 + 12, 12, 0);
	cr_assert_eq(r.invariant, 0, "%s", r.detail);
	chaos_judge_downtime(&r, 2368, 17, 12, 2352);
	cr_assert_eq(r.invariant, 0, "a source frozen before its vCPUs stopped: %s", r.detail);
	chaos_judge_downtime(&r, 4189, 14, 12, 0);
	cr_assert_eq(r.invariant, CHAOS_INV_CONTRACT, "a clock's skew taken for downtime");
	r = a_run();
	chaos_judge_downtime(&r, 0, 900, 0, 0);
	cr_assert_eq(r.invariant, CHAOS_INV_CONTRACT, "a long pause reported as none");
}

/* ---- a libvirt domain's run (chaos_lv_judge) ---- */

static struct chaos_lv_json lv_json(const char *result, const char *owner, const char *src,
				    const char *dst)
{
	struct chaos_lv_json j = { 0 };

	strcpy(j.result, result);
	strcpy(j.owner, owner);
	strcpy(j.src_state, src);
	strcpy(j.dst_state, dst);
	return j;
}

static struct chaos_run lv_judge(int code, bool killed, const struct chaos_lv_json *j,
				 uint32_t src, uint32_t dst)
{
	struct chaos_run r = { 0 };
	struct chaos_lv_seen seen = { src, dst };

	chaos_lv_judge(&r, code, killed, true, "", j, &seen);
	return r;
}

#define RUNNING MIG_LV_STATE_RUNNING
#define ABSENT MIG_LV_STATE_ABSENT

Test(judge_lv, the_contract_each_way)
{
	struct chaos_lv_json done = lv_json("completed", "destination", "absent", "running"),
			     back = lv_json("cancelled", "source", "running", "absent"),
			     none = lv_json("failed", "none", "running", "running");
	struct chaos_run r;

	r = lv_judge(0, false, &done, ABSENT, RUNNING);
	cr_assert_eq(r.invariant, 0, "%s", r.detail);
	cr_assert_eq(r.outcome, CHAOS_OUT_COMPLETED);
	r = lv_judge(1, false, &back, RUNNING, ABSENT);
	cr_assert_eq(r.invariant, 0, "%s", r.detail);
	cr_assert_eq(r.outcome, CHAOS_OUT_ROLLED_BACK);
	/* exit 0, yet the domain stayed on the source */
	r = lv_judge(0, false, &done, RUNNING, ABSENT);
	cr_assert_eq(r.invariant, CHAOS_INV_CONTRACT);
	/* exit 1 that names the destination */
	back = lv_json("failed", "destination", "running", "absent");
	r = lv_judge(1, false, &back, RUNNING, ABSENT);
	cr_assert_eq(r.invariant, CHAOS_INV_CONTRACT);
	/* the JSON's states against the hosts' */
	done = lv_json("completed", "destination", "running", "running");
	r = lv_judge(0, false, &done, ABSENT, RUNNING);
	cr_assert_eq(r.invariant, CHAOS_INV_CONTRACT);
	/* exit 3 with no owner is an operator's, even with two copies named
	 * (never two still fails it when both run) */
	r = lv_judge(3, false, &none, MIG_LV_STATE_PAUSED, RUNNING);
	cr_assert_eq(r.invariant, 0, "%s", r.detail);
	cr_assert_eq(r.outcome, CHAOS_OUT_OPERATOR);
	r = lv_judge(3, false, &none, RUNNING, RUNNING);
	cr_assert_eq(r.invariant, CHAOS_INV_NEVER_TWO);
	/* exit 3 naming the destination where the domain is not */
	none = lv_json("failed", "destination", "running", "absent");
	r = lv_judge(3, false, &none, RUNNING, ABSENT);
	cr_assert_eq(r.invariant, CHAOS_INV_CONTRACT);
	r = lv_judge(3, false, &none, ABSENT, RUNNING);
	cr_assert_eq(r.invariant, 0, "%s", r.detail);
	/* exit 2 for valid options, or a signal nobody sent */
	r = lv_judge(2, false, &back, RUNNING, ABSENT);
	cr_assert_eq(r.invariant, CHAOS_INV_CONTRACT);
	r = lv_judge(-1, false, &back, RUNNING, ABSENT);
	cr_assert_eq(r.invariant, CHAOS_INV_CONTRACT);
}

Test(judge_lv, never_none_silently)
{
	struct chaos_lv_json j = { 0 }, back = lv_json("failed", "source", "running", "absent");
	struct chaos_run r;

	/* a killed start: no contract, but one copy must run */
	r = lv_judge(0, true, &j, ABSENT, RUNNING);
	cr_assert_eq(r.invariant, 0, "%s", r.detail);
	cr_assert_eq(r.outcome, CHAOS_OUT_NO_EXIT);
	r = lv_judge(0, true, &j, MIG_LV_STATE_PAUSED, ABSENT);
	cr_assert_eq(r.invariant, CHAOS_INV_NEVER_NONE);
	r = lv_judge(1, false, &back, MIG_LV_STATE_SHUTOFF, ABSENT);
	cr_assert_eq(r.invariant, CHAOS_INV_NEVER_NONE);
	/* JSON that does not parse is the contract's */
	{
		struct chaos_run x = { 0 };
		struct chaos_lv_seen seen = { RUNNING, ABSENT };

		chaos_lv_judge(&x, 1, false, false, "start printed nothing", &back, &seen);
		cr_assert_eq(x.invariant, CHAOS_INV_CONTRACT);
		cr_assert_str_eq(x.detail, "start printed nothing");
	}
}

/* ---- post-copy's outcomes (docs/chaos.md, "Post-copy") ---- */

/* the guest on the destination, a settle period before */
static const struct chaos_copies earlier = { .running = 1, .run_at = 1, .passes = 9 };

static struct chaos_run pc_run(const char *kind)
{
	struct chaos_run r = a_run();
	struct mig_error err = { 0 };
	uint64_t m;

	cr_assert_eq(chaos_faults_parse(kind, &m, &err), 0);
	r.fault.kind = (unsigned)__builtin_ctzll(m);
	r.fault.phase = MIG_PHASE_POSTCOPY;
	r.fired = true;
	return r;
}

static struct chaos_start_json pc_split_json(void)
{
	struct chaos_start_json j = json("failed", "none");

	strcpy(j.error, "post-copy broke: the VM is split between the hosts, its vCPUs on the "
	       "destination and 412 of its pages here; both halves are kept (source paused): ...");
	j.verified = false;
	j.reached_postcopy = true;
	return j;
}

/* An agent's death in post-copy: exit 3, the VM lost, the other half held. */
Test(judge_pc, a_death_loses_the_vm_and_keeps_the_other_half)
{
	struct chaos_start_json j = pc_split_json(), lost = json("failed", "none");
	struct chaos_copies src_half = { .held = 1, .held_at = 0, .held_on = { true } },
			    dst_half = { .held = 1, .held_at = 1, .held_on = { false, true } },
			    none = { 0 };
	struct chaos_run r;

	r = pc_run("kill-dst");
	r.fault.kills_dst = true;
	chaos_judge_exit(&r, 3, 0, false, true, "", &j);
	chaos_judge_copies(&r, &src_half, &src_half, &j, false, true, 300);
	cr_assert_eq(r.invariant, 0, "%s", r.detail);
	cr_assert_eq(r.outcome, CHAOS_OUT_LOST_IN_POSTCOPY);
	/* no half kept: the VM went silently */
	r = pc_run("kill-dst");
	r.fault.kills_dst = true;
	chaos_judge_exit(&r, 3, 0, false, true, "", &j);
	chaos_judge_copies(&r, &none, &none, &j, false, true, 300);
	cr_assert_eq(r.invariant, CHAOS_INV_NEVER_NONE, "%s", r.detail);
	/* the half kept is the dead agent's, not the survivor's */
	r = pc_run("kill-dst");
	r.fault.kills_dst = true;
	chaos_judge_exit(&r, 3, 0, false, true, "", &j);
	chaos_judge_copies(&r, &dst_half, &dst_half, &j, false, true, 300);
	cr_assert_eq(r.invariant, CHAOS_INV_NEVER_NONE, "%s", r.detail);
	/* the source's death: start says what it can (its agent is gone, and
	 * with it the phases); the destination's half held shows post-copy */
	strcpy(lost.error, "lost the source agent: receiving frame seq 15: the peer closed "
	       "the connection");
	r = pc_run("kill-src");
	r.fault.kills_src = true;
	chaos_judge_exit(&r, 3, 0, false, true, "", &lost);
	chaos_judge_copies(&r, &dst_half, &dst_half, &lost, true, false, 300);
	cr_assert_eq(r.invariant, 0, "%s", r.detail);
	cr_assert_eq(r.outcome, CHAOS_OUT_LOST_IN_POSTCOPY);
	/* a death the runner did not see is no excuse */
	r = pc_run("kill-src");
	r.fault.kills_src = true;
	chaos_judge_exit(&r, 3, 0, false, true, "", &j);
	chaos_judge_copies(&r, &dst_half, &dst_half, &j, false, false, 300);
	cr_assert_eq(r.invariant, CHAOS_INV_NEVER_NONE, "%s", r.detail);
	/* a kill aimed at post-copy that came in round 0 (the migration never
	 * got there): pre-copy's rules, the VM lost with its only agent */
	r = pc_run("kill-src");
	r.fault.kills_src = true;
	chaos_judge_exit(&r, 3, 0, false, true, "", &lost);
	chaos_judge_copies(&r, &none, &none, &lost, true, false, 300);
	cr_assert_eq(r.invariant, 0, "%s", r.detail);
	cr_assert_eq(r.outcome, CHAOS_OUT_LOST_WITH_AGENT);
	/* ... but once there, no half kept is a silent loss */
	lost.reached_postcopy = true;
	r = pc_run("kill-src");
	r.fault.kills_src = true;
	chaos_judge_exit(&r, 3, 0, false, true, "", &lost);
	chaos_judge_copies(&r, &none, &none, &lost, true, false, 300);
	cr_assert_eq(r.invariant, CHAOS_INV_NEVER_NONE, "%s", r.detail);
	/* exit 1 after the VM started on the destination is a lie */
	r = pc_run("kill-dst");
	r.fault.kills_dst = true;
	chaos_judge_exit(&r, 1, 0, false, true, "", &j);
	cr_assert_eq(r.invariant, CHAOS_INV_CONTRACT, "%s", r.detail);
}

/* The same loss is never allowed outside post-copy, nor called anything else. */
Test(judge_pc, never_outside_postcopy)
{
	struct chaos_start_json j = pc_split_json(), lost = json("failed", "none");
	struct chaos_copies both = { .held = 2, .held_at = 1, .held_on = { true, true } },
			    none = { 0 };
	struct chaos_run r;

	r = pc_run("kill-dst");
	r.fault.phase = MIG_PHASE_COMMIT;
	r.fault.kills_dst = true;
	chaos_judge_exit(&r, 3, 0, false, true, "", &j);
	cr_assert_eq(r.invariant, CHAOS_INV_CONTRACT, "a split aimed at commit: %s", r.detail);
	r = pc_run("link-down");
	r.fault.phase = MIG_PHASE_PRECOPY;
	chaos_judge_exit(&r, 3, 0, false, true, "", &j);
	cr_assert_eq(r.invariant, CHAOS_INV_CONTRACT);
	/* both "halves" held outside post-copy: a held copy on the destination */
	r = pc_run("link-down");
	r.fault.phase = MIG_PHASE_COMMIT;
	lost.source_copy = true;
	strcpy(lost.copy_vm, "vm");
	chaos_judge_exit(&r, 3, 0, false, true, "", &lost);
	chaos_judge_copies(&r, &both, &both, &lost, false, false, 300);
	cr_assert_eq(r.invariant, CHAOS_INV_CONTRACT, "%s", r.detail);
	cr_assert_neq(r.outcome, CHAOS_OUT_SPLIT);
	/* a death in pre-copy is still lost-with-agent, never lost-in-postcopy */
	r = pc_run("kill-src");
	r.fault.phase = MIG_PHASE_PRECOPY;
	r.fault.kills_src = true;
	lost = json("failed", "none");
	chaos_judge_exit(&r, 3, 0, false, true, "", &lost);
	chaos_judge_copies(&r, &none, &none, &lost, true, false, 300);
	cr_assert_eq(r.invariant, 0, "%s", r.detail);
	cr_assert_eq(r.outcome, CHAOS_OUT_LOST_WITH_AGENT);
	/* a split with owner or exit that says otherwise */
	r = pc_run("kill-dst");
	r.fault.kills_dst = true;
	strcpy(j.owner, "source");
	chaos_judge_exit(&r, 3, 0, false, true, "", &j);
	cr_assert_eq(r.invariant, CHAOS_INV_CONTRACT);
	strcpy(j.owner, "none");
	r = pc_run("kill-dst");
	r.fault.kills_dst = true;
	chaos_judge_exit(&r, 1, 0, false, true, "", &j);
	cr_assert_eq(r.invariant, CHAOS_INV_CONTRACT);
	/* start says split, and the VM runs on the source: a half resumed */
	r = pc_run("partition");
	{
		struct chaos_copies on_src = running_on(0, 10), before = running_on(0, 9),
				    on_dst = running_on(1, 10), src_kept = on_dst;

		chaos_judge_exit(&r, 3, 0, false, true, "", &j);
		chaos_judge_copies(&r, &before, &on_src, &j, false, false, 300);
		cr_assert_eq(r.invariant, CHAOS_INV_CONTRACT, "%s", r.detail);
		/* ... on the destination, whole: every page came while the source
		 * could not hear so; its half held, for an operator */
		src_kept.held = 1;
		src_kept.held_at = 0;
		src_kept.held_on[0] = true;
		j.source_copy = true;
		strcpy(j.copy_vm, "vm");
		r = pc_run("partition");
		chaos_judge_exit(&r, 3, 0, false, true, "", &j);
		chaos_judge_copies(&r, &earlier, &src_kept, &j, false, false, 300);
		cr_assert_eq(r.invariant, 0, "%s", r.detail);
		cr_assert_eq(r.outcome, CHAOS_OUT_HELD);
		/* ... with a held copy the JSON does not name */
		j.source_copy = false;
		r = pc_run("partition");
		chaos_judge_exit(&r, 3, 0, false, true, "", &j);
		chaos_judge_copies(&r, &earlier, &src_kept, &j, false, false, 300);
		cr_assert_eq(r.invariant, CHAOS_INV_CONTRACT, "%s", r.detail);
	}
}

/* A link fault in post-copy: recovered (completed), or, past the window,
 * split with both halves held; never split when the link came back in time. */
Test(judge_pc, a_link_recovers_or_outlasts_its_window)
{
	struct chaos_start_json j = pc_split_json(), done = json("completed", "destination");
	struct chaos_copies both = { .held = 2, .held_at = 1, .held_on = { true, true } },
			    src_half = { .held = 1, .held_at = 0, .held_on = { true } },
			    on_dst = running_on(1, 10);
	struct chaos_run r;

	r = pc_run("link-down");
	r.fault.link_ms = r.fault.outage_ms = 5000;
	r.fault.recover_ms = 1000;
	r.fault.may_split = true;
	chaos_judge_exit(&r, 3, 0, false, true, "", &j);
	chaos_judge_copies(&r, &both, &both, &j, false, false, 300);
	cr_assert_eq(r.invariant, 0, "%s", r.detail);
	cr_assert_eq(r.outcome, CHAOS_OUT_SPLIT);
	/* one half not held */
	r.invariant = 0;
	r.outcome = 0;
	chaos_judge_exit(&r, 3, 0, false, true, "", &j);
	chaos_judge_copies(&r, &src_half, &src_half, &j, false, false, 300);
	cr_assert_eq(r.invariant, CHAOS_INV_NEVER_NONE, "%s", r.detail);
	/* recovered: completed, on the destination */
	r = pc_run("link-down");
	r.fault.outage_ms = 5000;
	r.fault.recover_ms = 1000;
	r.fault.may_split = true;
	chaos_judge_exit(&r, 0, 0, false, true, "", &done);
	chaos_judge_copies(&r, &earlier, &on_dst, &done, false, false, 300);
	cr_assert_eq(r.invariant, 0, "%s", r.detail);
	cr_assert_eq(r.outcome, CHAOS_OUT_COMPLETED);
	/* the link was back within the window (and a retry before its end): a
	 * split is a loss it must not cause */
	r = pc_run("stall");
	r.fault.outage_ms = 800;
	r.fault.recover_ms = 3000;
	chaos_judge_exit(&r, 3, 0, false, true, "", &j);
	chaos_judge_copies(&r, &both, &both, &j, false, false, 300);
	cr_assert_eq(r.invariant, CHAOS_INV_NEVER_NONE, "%s", r.detail);
	r = pc_run("reset");
	r.fault.recover_ms = 2000;
	chaos_judge_exit(&r, 3, 0, false, true, "", &j);
	chaos_judge_copies(&r, &both, &both, &j, false, false, 300);
	cr_assert_eq(r.invariant, CHAOS_INV_NEVER_NONE, "a reset is a moment: %s", r.detail);
}

/* A cancel in post-copy is ignored: the migration completes. */
Test(judge_pc, a_cancel_is_ignored)
{
	struct chaos_start_json done = json("completed", "destination"), j = pc_split_json(),
				cancelled = json("cancelled", "source");
	struct chaos_copies on_dst = running_on(1, 10);
	struct chaos_run r;

	r = pc_run("cancel");
	chaos_judge_exit(&r, 0, 0, false, true, "", &done);
	chaos_judge_copies(&r, &earlier, &on_dst, &done, false, false, 300);
	cr_assert_eq(r.invariant, 0, "%s", r.detail);
	cr_assert_eq(r.outcome, CHAOS_OUT_COMPLETED);
	r = pc_run("cancel");
	chaos_judge_exit(&r, 3, 0, false, true, "", &j);
	cr_assert_eq(r.invariant, CHAOS_INV_CONTRACT, "%s", r.detail);
	r = pc_run("cancel");
	chaos_judge_exit(&r, 1, 0, false, true, "", &cancelled);
	cr_assert_eq(r.invariant, CHAOS_INV_CONTRACT, "%s", r.detail);
	/* not fired (the migration ended first): nothing to hold it to */
	r = pc_run("cancel");
	r.fired = false;
	chaos_judge_exit(&r, 0, 0, false, true, "", &done);
	cr_assert_eq(r.invariant, 0);
}
