// SPDX-License-Identifier: MIT
/*
 * The compatibility checks a destination runs at SETUP, through the
 * classes' compat ops on this host's KVM: the vCPU's CPUID features
 * (policies: compat_cpuid()) pass for a guest this host made, and a
 * description that asks for features this host's KVM does not offer is
 * refused with the feature named.
 */
#include <criterion/criterion.h>
#include <errno.h>
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
