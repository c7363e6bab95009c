// SPDX-License-Identifier: MIT
/*
 * The host compatibility policies (policies/compat.c), as pure functions:
 * a passing and a refusing case each, and what the refusal says.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include <migrate/policy.h>

static int index_of(uint32_t leaf, uint32_t subleaf, uint8_t reg)
{
	for (int i = 0; i < COMPAT_CPUID_REGS; i++)
		if (compat_cpuid_features[i].leaf == leaf &&
		    compat_cpuid_features[i].subleaf == subleaf && compat_cpuid_features[i].reg == reg)
			return i;
	return -1;
}

Test(compat_cpuid, a_guest_within_the_host_passes)
{
	uint32_t guest[COMPAT_CPUID_REGS], host[COMPAT_CPUID_REGS];
	struct mig_error err = { 0 };

	for (int i = 0; i < COMPAT_CPUID_REGS; i++) {
		host[i] = 0xf0f0f0f0U;
		guest[i] = 0x30303030U;
	}
	cr_assert_eq(compat_cpuid(guest, host, &err), 0, "%s", err.msg);
	cr_assert_eq(compat_cpuid(host, host, &err), 0, "%s", err.msg);
}

Test(compat_cpuid, a_missing_feature_is_named_with_both_values)
{
	uint32_t guest[COMPAT_CPUID_REGS] = { 0 }, host[COMPAT_CPUID_REGS] = { 0 };
	struct mig_error err = { 0 };
	int ebx7 = index_of(0x7, 0, 1);

	cr_assert_geq(ebx7, 0);
	guest[ebx7] = 1U << 16 | 1U << 5;   /* avx512f, avx2 */
	host[ebx7] = 1U << 5;
	cr_assert_eq(compat_cpuid(guest, host, &err), -ENOTSUP);
	cr_assert(strstr(err.msg, "avx512f") && strstr(err.msg, "leaf 0x7.0 EBX bit 16") &&
		  strstr(err.msg, "0x20") && strstr(err.msg, "0x10020") &&
		  strstr(err.msg, "CPU model"), "%s", err.msg);
}

Test(compat_cpuid, an_unnamed_bit_is_named_by_its_place)
{
	uint32_t guest[COMPAT_CPUID_REGS] = { 0 }, host[COMPAT_CPUID_REGS] = { 0 };
	struct mig_error err = { 0 };
	int edx81 = index_of(0x80000001, 0, 3);

	cr_assert_geq(edx81, 0);
	guest[edx81] = 1U << 11 | 1U << 13;
	cr_assert_eq(compat_cpuid(guest, host, &err), -ENOTSUP);
	cr_assert(strstr(err.msg, "leaf 0x80000001.0 EDX bit 11") &&
		  strstr(err.msg, "and more of that register"), "%s", err.msg);
}

/* OSXSAVE and OSPKE mirror the guest's CR4: no host offers them. */
Test(compat_cpuid, the_guests_own_state_bits_are_not_features)
{
	uint32_t guest[COMPAT_CPUID_REGS] = { 0 }, host[COMPAT_CPUID_REGS] = { 0 };
	struct mig_error err = { 0 };

	guest[index_of(0x1, 0, 2)] = 1U << 27;
	guest[index_of(0x7, 0, 2)] = 1U << 4;
	cr_assert_eq(compat_cpuid(guest, host, &err), 0, "%s", err.msg);
}
