// SPDX-License-Identifier: MIT
/*
 * The compatibility checks a destination runs at SETUP, through the
 * classes' compat ops on this host's KVM: the vCPU's CPUID features
 * (policies: compat_cpuid()) pass for a guest this host made, and a
 * description that asks for features this host's KVM does not offer is
 * refused with the feature named; and the dry run of every policy
 * (mig_vm_manifest_report(), what `migratectl check` runs) on a VM's own
 * manifest.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <migrate/device.h>
#include <migrate/lab.h>
#include <migrate/policy.h>

#include "lab/lab-internal.h"

const int test_requires_kvm = 1;

Test(compat, a_vcpus_cpuid_against_this_host, .timeout = 120)
{
	struct lab_config cfg;
	struct lab_vm *vm;
	struct mig_error err = { 0 };
	struct mig_buf desc = { 0 };
	const struct mig_compat_ops *c = vcpu_class.compat_ops;
	struct mig_device *d;

	lab_config_default(&cfg);
	cr_assert_eq(lab_spec_parse("mem=64M,vcpus=1,wss=4M", &cfg, &err), 0);
	cr_assert_eq(lab_vm_create(&cfg, &vm, &err), 0, "%s", err.msg);
	d = &vm->vcpus[0]->core;
	cr_assert_not_null(c);
	cr_assert_eq(c->describe(d, &desc, &err), 0, "%s", err.msg);
	cr_assert_eq(c->check(d, desc.data, desc.len, &err), 0, "%s", err.msg);
	/* every bit of 7.0 EBX: no host has them all */
	for (unsigned i = 0; i < COMPAT_CPUID_REGS; i++)
		if (compat_cpuid_features[i].leaf == 7 && compat_cpuid_features[i].subleaf == 0 &&
		    compat_cpuid_features[i].reg == 1)
			memset(desc.data + 8 + 4 * i, 0xff, 4);
	mig_error_clear(&err);
	cr_assert_eq(c->check(d, desc.data, desc.len, &err), -ENOTSUP);
	cr_assert(strstr(err.msg, "vCPU 0: CPUID: the guest sees") &&
		  strstr(err.msg, "leaf 0x7.0 EBX") && strstr(err.msg, "does not offer"), "%s",
		  err.msg);
	/* a description of another shape is refused, not misread */
	mig_error_clear(&err);
	cr_assert_eq(c->check(d, desc.data, desc.len - 4, &err), -EPROTO);
	mig_buf_free(&desc);
	lab_vm_destroy(vm);
}

struct verdicts {
	char text[4096];          /* "memory 0 memslots 0; vcpu 0 cpuid 0; ..." */
	int reported;
};

static void collect(void *arg, uint32_t cls, uint32_t instance, const char *policy,
		    int verdict, const char *msg)
{
	struct verdicts *v = arg;
	size_t len = strlen(v->text);

	(void)msg;
	snprintf(v->text + len, sizeof(v->text) - len, "%s %u %s %d; ",
		 mig_dev_class_to_string((enum mig_dev_class)cls) ?: "?", instance, policy,
		 verdict);
	v->reported++;
}

/* Every policy of every device, each reported; what the manifest lacks is
 * the policy "devices"; a vCPU whose MSR list was too long to describe is
 * reported as not judged, not as passing. */
Test(compat, every_policy_reported, .timeout = 120)
{
	struct lab_config cfg;
	struct lab_vm *vm;
	struct mig_error err = { 0 };
	struct mig_buf man = { 0 };
	struct verdicts v = { 0 };
	struct mig_manifest_entry e;
	uint32_t n, flags, zero = 0;
	int r;

	lab_config_default(&cfg);
	cr_assert_eq(lab_spec_parse("mem=64M,vcpus=2,wss=4M", &cfg, &err), 0);
	cr_assert_eq(lab_vm_create(&cfg, &vm, &err), 0, "%s", err.msg);
	cr_assert_eq(mig_vm_manifest(&vm->base, &man, &err), 0, "%s", err.msg);
	n = (uint32_t)(man.len / sizeof(e));
	r = mig_vm_manifest_report(&vm->base, man.data, man.len, n, collect, &v, &err);
	cr_assert_eq(r, 0, "%s", v.text);
	cr_assert(strstr(v.text, "memory 0 memslots 0;") && strstr(v.text, "vcpu 0 cpuid 0;") &&
		  strstr(v.text, "vcpu 1 pmu 0;") && strstr(v.text, "vcpu 1 msrs 0;"), "%s",
		  v.text);
	/* a host described without sse2: both vCPUs refuse, and say why */
	{
		struct compat_profile prof;

		cr_assert_eq(compat_profile_parse("cpuid-off=sse2", &prof, &err), 0, "%s", err.msg);
		compat_profile_set(&prof);
		memset(&v, 0, sizeof(v));
		r = mig_vm_manifest_report(&vm->base, man.data, man.len, n, collect, &v, &err);
		mig_error_clear(&err);
		cr_assert_eq(mig_vm_manifest_check(&vm->base, man.data, man.len, n, &err), -ENOTSUP);
		compat_profile_set(NULL);
		cr_assert_eq(r, 2, "%s", v.text);
		cr_assert(strstr(v.text, "vcpu 0 cpuid -95;") && strstr(v.text, "vcpu 1 cpuid -95;") &&
			  strstr(v.text, "vcpu 1 msrs 0;"), "%s", v.text);
		cr_assert(strstr(err.msg, "device vcpu 0: vCPU 0: CPUID: the guest sees sse2") &&
			  strstr(err.msg, "--host-profile describes it]"), "%s", err.msg);
	}
	/* vCPU 0's description without its MSR list (flags bit 1 and the length
	 * cleared, the list cut off), and the last device left out */
	for (uint32_t k = 0; k < n; k++) {
		memcpy(&e, man.data + k * sizeof(e), sizeof(e));
		if (e.cls != MIG_DEV_VCPU || e.instance != 0)
			continue;
		memcpy(&flags, e.desc + 52, 4);
		flags &= ~2U;
		memcpy(e.desc + 52, &flags, 4);
		memcpy(e.desc + 56, &zero, 4);
		e.desc_len = 72;
		memcpy(man.data + k * sizeof(e), &e, sizeof(e));
	}
	memset(&v, 0, sizeof(v));
	r = mig_vm_manifest_report(&vm->base, man.data, man.len - sizeof(e), n - 1, collect, &v,
				   &err);
	cr_assert_eq(r, 1, "one refusal: %s", v.text);
	cr_assert(strstr(v.text, "vcpu 0 msrs 1;") && strstr(v.text, "vcpu 0 cpuid 0;") &&
		  strstr(v.text, "vcpu 1 devices -19;"), "%s", v.text);
	/* SETUP's check stops at the first problem */
	mig_error_clear(&err);
	cr_assert_eq(mig_vm_manifest_check(&vm->base, man.data, man.len - sizeof(e), n - 1, &err),
		     -ENODEV, "%s", err.msg);
	cr_assert_not_null(strstr(err.msg, "this VM has it, the source's does not"), "%s",
			   err.msg);
	mig_buf_free(&man);
	lab_vm_destroy(vm);
}
