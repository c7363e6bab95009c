// SPDX-License-Identifier: MIT
/*
 * migratectl check SRC DST between two real agents on this host.  Both
 * share one KVM, so the refusing pairs describe a smaller or different host
 * with agent --host-profile (docs/policies.md): a destination with fewer
 * memory slots, one without a CPUID feature or an MSR, and a source whose
 * guest is described as given PEBS, which this host (kvm.enable_pmu=N)
 * does not offer.  Each refusal must name the field, both values and what
 * to do; a compatible pair passes every policy; and a migration to a
 * refusing destination stops at SETUP with the VM still running.
 */
#include <criterion/criterion.h>
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <migrate/agent.h>
#include <migrate/vm.h>

#include "proc-fixture.h"

const int test_requires_kvm = 1;

/* Two agents (each with its profile, NULL: none) and a lab VM "v" of `lab`
 * on the source. */
static void pair_up(struct proc_pair *p, const char *src_profile, const char *dst_profile,
		    const char *lab)
{
	struct run_result r;
	char args[512];

	proc_pair_up(p, src_profile, dst_profile);
	snprintf(args, sizeof(args), "vm create %s --name v --lab %s", p->src, lab);
	proc_run(args, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);
}

static void check_json(const struct proc_pair *p, struct run_result *r)
{
	char args[512];

	snprintf(args, sizeof(args), "check %s %s --vm v --json", p->src, p->dst);
	proc_run(args, r);
}

/* The verdict of `policy` on `device` in check's JSON. */
static void expect_result(const char *json, const char *policy, const char *device,
			  const char *result)
{
	char want[160];

	snprintf(want, sizeof(want), "{\"policy\":\"%s\",\"device\":\"%s\",\"result\":\"%s\"",
		 policy, device, result);
	cr_assert_not_null(strstr(json, want), "no %s in %s", want, json);
}

/* The message of the first refusal in check's JSON contains each needle. */
static void expect_refusal(const char *json, const char *const *needles)
{
	const char *m = strstr(json, "\"result\":\"refuse\",\"message\":\"");
	char msg[1024];

	cr_assert_not_null(m, "no refusal in %s", json);
	m += strlen("\"result\":\"refuse\",\"message\":\"");
	snprintf(msg, sizeof(msg), "%.*s", (int)(strchrnul(m, '"') - m), m);
	for (; *needles; needles++)
		cr_assert_not_null(strstr(msg, *needles), "'%s' lacks '%s'", msg, *needles);
}

/* check between agents so profiled refuses exactly one policy, on the
 * first device of its class, saying each needle (exit 4); the pair stays
 * up in *p for more. */
static void expect_refused(struct proc_pair *p, const char *src_profile,
			   const char *dst_profile, const char *lab, const char *policy,
			   const char *device, const char *const *needles, struct run_result *r)
{
	pair_up(p, src_profile, dst_profile, lab);
	check_json(p, r);
	cr_assert_eq(r->status, 4, "exit %d: %s %s", r->status, r->out, r->err);
	json_expect_str(r->out, "compatible", "false");
	cr_assert_eq(json_num(r->out, "refused"), 1, "%s", r->out);
	expect_result(r->out, policy, device, "refuse");
	expect_refusal(r->out, needles);
}

Test(check, a_compatible_pair_passes_every_policy, .timeout = 120)
{
	struct proc_pair p;
	struct run_result r;
	char args[512];

	pair_up(&p, NULL, NULL, "mem=64M,vcpus=2,wss=4M");
	check_json(&p, &r);
	cr_assert_eq(r.status, 0, "exit %d: %s %s", r.status, r.out, r.err);
	json_expect_str(r.out, "vm", "v");
	json_expect_str(r.out, "compatible", "true");
	cr_assert_eq(json_num(r.out, "refused"), 0);
	expect_result(r.out, "memslots", "memory 0", "pass");
	/* passes of both vCPUs fold into one */
	expect_result(r.out, "cpuid", "vcpu 0-1", "pass");
	expect_result(r.out, "pmu", "vcpu 0-1", "pass");
	expect_result(r.out, "msrs", "vcpu 0-1", "pass");
	cr_assert_null(strstr(r.out, "\"result\":\"refuse\""), "%s", r.out);
	/* the text form, and the only VM on the source without --vm */
	snprintf(args, sizeof(args), "check %s %s", p.src, p.dst);
	proc_run(args, &r);
	cr_assert_eq(r.status, 0, "%s %s", r.out, r.err);
	cr_assert_not_null(strstr(r.out, "compatible: no policy refuses"), "%s", r.out);
	proc_pair_down(&p);
}

Test(check, a_destination_without_a_cpuid_feature, .timeout = 120)
{
	static const char *const needles[] = {
		"vCPU 0: CPUID: the guest sees sse2 (leaf 0x1.0 EDX bit 26)",
		"KVM_GET_SUPPORTED_CPUID EDX is", "CPU model both hosts support",
		"--host-profile", NULL,
	};
	struct proc_pair p;
	struct run_result r;

	expect_refused(&p, NULL, "cpuid-off=sse2", "mem=64M,vcpus=1,wss=4M", "cpuid", "vcpu 0",
		       needles, &r);
	expect_result(r.out, "memslots", "memory 0", "pass");
	expect_result(r.out, "pmu", "vcpu 0", "pass");
	expect_result(r.out, "msrs", "vcpu 0", "pass");
	proc_pair_down(&p);
}

/* This host offers guests no PMU (kvm.enable_pmu=N): a source described as
 * having given its guest PEBS format 4 cannot come here. */
Test(check, a_guest_with_pebs_to_a_host_without, .timeout = 120)
{
	static const char *const needles[] = {
		"vCPU 0: PMU: the guest was given PEBS format 4 (PERF_CAPABILITIES 0x4c4",
		"offers format 0 (PERF_CAPABILITIES 0", "start the guest without PEBS", NULL,
	};
	struct proc_pair p;
	struct run_result r;
	char args[512];

	expect_refused(&p, "guest-perf-caps=0x4c4", NULL, "mem=64M,vcpus=1,wss=4M", "pmu",
		       "vcpu 0", needles, &r);
	expect_result(r.out, "cpuid", "vcpu 0", "pass");
	/* the text form says it too, and what it means */
	snprintf(args, sizeof(args), "check %s %s --vm v", p.src, p.dst);
	proc_run(args, &r);
	cr_assert_eq(r.status, 4);
	cr_assert(strstr(r.out, "refuse    pmu          vcpu 0       vCPU 0: PMU:") &&
		  strstr(r.out, "not compatible: 1 policy refuses"), "%s", r.out);
	proc_pair_down(&p);
}

/* 1026 MiB is two 1 GiB slots; the destination is described with one. */
Test(check, a_destination_with_fewer_memory_slots, .timeout = 180)
{
	static const char *const needles[] = {
		"memory slots: the VM needs 2 slots in address space 0",
		"this host's KVM allows 1 (KVM_CAP_NR_MEMSLOTS)", "fewer, larger slots", NULL,
	};
	struct proc_pair p;
	struct run_result r;

	expect_refused(&p, NULL, "memslots=1", "mem=1026M,vcpus=1,wss=4M", "memslots",
		       "memory 0", needles, &r);
	proc_pair_down(&p);
}

Test(check, a_destination_without_an_msr, .timeout = 120)
{
	static const char *const needles[] = {
		"MSRs: the guest's saved state has MSR 0x6e0 (IA32_TSC_DEADLINE)",
		"KVM_SET_MSRS would refuse it", NULL,
	};
	struct proc_pair p;
	struct run_result r;

	expect_refused(&p, NULL, "msr-off=0x6e0", "mem=64M,vcpus=1,wss=4M", "msrs", "vcpu 0",
		       needles, &r);
	proc_pair_down(&p);
}

/* The same policies run at a migration's SETUP: it stops there, before
 * anything stops, and the VM runs on at the source. */
Test(check, a_migration_to_a_refusing_host_stops_at_setup, .timeout = 180)
{
	struct proc_pair p;
	struct run_result r;
	char args[512];

	pair_up(&p, NULL, "cpuid-off=sse2", "mem=64M,vcpus=1,wss=4M");
	snprintf(args, sizeof(args), "start %s %s --vm v --json", p.src, p.dst);
	proc_run(args, &r);
	cr_assert_eq(r.status, 1, "exit %d: %s %s", r.status, r.out, r.err);
	cr_assert(strstr(r.out, "the guest sees sse2") || strstr(r.err, "the guest sees sse2"),
		  "%s %s", r.out, r.err);
	json_expect_str(r.out, "owner", "source");
	cr_assert(strstr(r.out, "{\"name\":\"setup\"") &&
		  !strstr(r.out, "{\"name\":\"precopy\""), "it went past SETUP: %s", r.out);
	snprintf(args, sizeof(args), "vm list %s --json", p.src);
	proc_run(args, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_expect_str(r.out, "state", "running");
	proc_pair_down(&p);
}

Test(check, bad_arguments_exit_2)
{
	proc_expect_usage("check unix:///nonexistent/a", "usage: migratectl check SRC DST");
	proc_expect_usage("check unix:///nonexistent/a unix:///nonexistent/b --vm 'a b'",
			  "check");
	proc_expect_usage("agent --listen unix:///nonexistent/a --host-profile memslots=0",
			  "--host-profile: host profile: memslots=0: a number of 1 or more");
	proc_expect_usage("agent --listen unix:///nonexistent/a --host-profile cpuid-off=avx9",
			  "give a feature name");
}

Test(check, an_unreachable_agent_is_exit_1)
{
	struct run_result r;

	proc_run("check unix:///nonexistent/a unix:///nonexistent/b --vm v", &r);
	cr_assert_eq(r.status, 1, "%s", r.err);
	cr_assert_not_null(strstr(r.err, "the source agent"), "%s", r.err);
}

/* A VM_CHECK whose manifest does not match its count, or is not whole
 * entries, is refused as such; the agent serves on. */
Test(check, a_malformed_check_request_is_refused, .timeout = 60)
{
	struct proc_pair p;
	struct mig_client c;
	struct mig_error err = { 0 };
	uint8_t body[sizeof(struct mig_vm_check) + 2 * sizeof(struct mig_manifest_entry)] = { 0 };
	struct mig_vm_check *req = (struct mig_vm_check *)body;
	char want[64];

	proc_pair_up(&p, NULL, NULL);
	cr_assert_eq(mig_client_open(p.dst, NULL, &c, &err), 0, "%s", err.msg);
	snprintf(req->name, sizeof(req->name), "v");
	req->vm.nr_devices = htole32(2);   /* as it travels */
	cr_assert_eq(mig_client_call(&c, MIG_OP_VM_CHECK, body, sizeof(*req) + 10, NULL, &err),
		     -EINVAL);
	snprintf(want, sizeof(want), "expected %zu and whole entries", sizeof(*req));
	cr_assert_not_null(strstr(err.msg, want), "%s", err.msg);
	mig_error_clear(&err);
	cr_assert_eq(mig_client_call(&c, MIG_OP_VM_CHECK, body,
				     sizeof(*req) + sizeof(struct mig_manifest_entry), NULL, &err),
		     -EINVAL);
	cr_assert_not_null(strstr(err.msg, "does not match its count"), "%s", err.msg);
	mig_error_clear(&err);
	cr_assert_eq(mig_client_call(&c, MIG_OP_VM_LIST, NULL, 0, NULL, &err), 0, "%s", err.msg);
	mig_client_close(&c);
	proc_pair_down(&p);
}
