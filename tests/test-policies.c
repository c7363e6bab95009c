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

/* ---- memory slots ---- */

Test(compat_memslots, slots_within_the_host_pass)
{
	struct compat_memslots vm = { .slots = { 64, 0 }, .id_end = { 64, 0 } };
	struct mig_error err = { 0 };

	cr_assert_eq(compat_memslots(&vm, 32764, 0, &err), 0, "%s", err.msg);
	cr_assert_eq(compat_memslots(&vm, 64, 1, &err), 0, "exactly full: %s", err.msg);
}

Test(compat_memslots, more_slots_than_the_host_allows_are_refused)
{
	struct compat_memslots vm = { .slots = { 510, 0 }, .id_end = { 510, 0 } };
	struct mig_error err = { 0 };

	cr_assert_eq(compat_memslots(&vm, 509, 1, &err), -ENOSPC);
	cr_assert(strstr(err.msg, "needs 510 slots in address space 0") &&
		  strstr(err.msg, "allows 509 (KVM_CAP_NR_MEMSLOTS)") &&
		  strstr(err.msg, "fewer, larger slots"), "%s", err.msg);
}

/* Slot ids, not only their count, must fit: KVM takes ids below its limit. */
Test(compat_memslots, a_high_slot_id_counts)
{
	struct compat_memslots vm = { .slots = { 2, 0 }, .id_end = { 100, 0 } };
	struct mig_error err = { 0 };

	cr_assert_eq(compat_memslots(&vm, 64, 1, &err), -ENOSPC);
	cr_assert(strstr(err.msg, "needs 100 slots") && strstr(err.msg, "ids up to 99"), "%s",
		  err.msg);
}

Test(compat_memslots, an_address_space_the_host_lacks_is_refused)
{
	struct compat_memslots vm = { .slots = { 4, 1 }, .id_end = { 4, 1 } };
	struct mig_error err = { 0 };

	cr_assert_eq(compat_memslots(&vm, 32764, 2, &err), 0, "%s", err.msg);
	cr_assert_eq(compat_memslots(&vm, 32764, 0, &err), -ENOSPC);
	cr_assert(strstr(err.msg, "address space 1 (x86: SMM)") &&
		  strstr(err.msg, "KVM_CAP_MULTI_ADDRESS_SPACE"), "%s", err.msg);
}

/* ---- PERF_CAPABILITIES ---- */

Test(compat_perf_caps, a_subset_without_pebs_passes)
{
	struct mig_error err = { 0 };

	cr_assert_eq(compat_perf_caps(0, 0, &err), 0, "%s", err.msg);
	cr_assert_eq(compat_perf_caps(0x2000, 0x32c4, &err), 0, "%s", err.msg);
	/* PEBS format 4 with the same PEBS bits on both */
	cr_assert_eq(compat_perf_caps(0x4c4, 0x24c4, &err), 0, "%s", err.msg);
}

Test(compat_perf_caps, bits_the_host_lacks_are_refused)
{
	struct mig_error err = { 0 };

	cr_assert_eq(compat_perf_caps(0x2000, 0, &err), -ENOTSUP);
	cr_assert(strstr(err.msg, "given PERF_CAPABILITIES 0x2000") &&
		  strstr(err.msg, "supports 0 (bits 0x2000 missing") &&
		  strstr(err.msg, "no PMU capabilities") && strstr(err.msg, "enable_pmu"),
		  "%s", err.msg);
}

/* A guest with PEBS needs the PEBS bits exactly: more on the host refuses too. */
Test(compat_perf_caps, pebs_needs_the_same_format)
{
	struct mig_error err = { 0 };

	cr_assert_eq(compat_perf_caps(0x4c4, 0x4c4 | 1ULL << 14, &err), -ENOTSUP);
	cr_assert(strstr(err.msg, "PEBS format 4") && strstr(err.msg, "offers format 4") &&
		  strstr(err.msg, "PEBS bits 0x4c0") && strstr(err.msg, "PEBS bits 0x44c0"),
		  "%s", err.msg);
	mig_error_clear(&err);
	cr_assert_eq(compat_perf_caps(0x4c4, 0x3c4, &err), -ENOTSUP);
	cr_assert(strstr(err.msg, "PEBS format 4") && strstr(err.msg, "offers format 3") &&
		  strstr(err.msg, "without PEBS"), "%s", err.msg);
}

/* ---- MSRs ---- */

Test(compat_msrs, msrs_the_host_lists_pass)
{
	const uint32_t guest[] = { 0x10, 0x345, 0x4b564d00 };
	const uint32_t host[] = { 0x4b564d00, 0x3a, 0x10, 0x345 };
	struct mig_error err = { 0 };

	cr_assert_eq(compat_msrs(guest, 3, host, 4, &err), 0, "%s", err.msg);
}

Test(compat_msrs, an_msr_the_host_lacks_is_refused)
{
	const uint32_t guest[] = { 0x10, 0x6e0, 0x3f1, 0x4b564d00 };
	const uint32_t host[] = { 0x4b564d00, 0x10 };
	struct mig_error err = { 0 };

	cr_assert_eq(compat_msrs(guest, 4, host, 2, &err), -ENOTSUP);
	cr_assert(strstr(err.msg, "MSR 0x6e0 (IA32_TSC_DEADLINE)") &&
		  strstr(err.msg, "2 of the guest's 4 MSRs") && strstr(err.msg, "KVM_SET_MSRS"),
		  "%s", err.msg);
}

Test(compat_msrs, lists_travel_as_runs)
{
	const uint32_t list[] = { 0x10, 0x11, 0x12, 0x3a, 0x6e0, 0x4b564d00, 0x4b564d01, 0xc0000080,
				  0xffffffff };
	uint32_t back[16];
	uint8_t buf[64];
	int n = compat_msrs_encode(list, 9, buf, sizeof(buf));

	cr_assert_gt(n, 0);
	cr_assert_lt(n, 9 * 4, "runs are shorter than the list: %d bytes", n);
	cr_assert_eq(compat_msrs_decode(buf, (size_t)n, back, 16), 9);
	cr_assert_arr_eq(back, list, sizeof(list));
	cr_assert_eq(compat_msrs_encode(list, 9, buf, 4), -E2BIG);
	cr_assert_eq(compat_msrs_decode(buf, (size_t)n, back, 8), -E2BIG);
	cr_assert_eq(compat_msrs_decode(buf, (size_t)n - 1, back, 16), -EBADMSG, "cut short");
	buf[0] = 0xff;
	buf[1] = 0xff;
	buf[2] = 0xff;
	buf[3] = 0xff;
	buf[4] = 0xff;
	cr_assert_eq(compat_msrs_decode(buf, 5, back, 16), -EBADMSG, "a varint too long");
}

/* ---- VFIO BARs ---- */

Test(compat_vfio_bar, the_same_attributes_pass)
{
	struct mig_error err = { 0 };

	cr_assert_eq(compat_vfio_bar("BAR2", COMPAT_BAR_PREFETCH | COMPAT_BAR_WC,
				     COMPAT_BAR_PREFETCH | COMPAT_BAR_WC, &err), 0, "%s", err.msg);
	cr_assert_eq(compat_vfio_bar("BAR0", 0, 0, &err), 0, "%s", err.msg);
}

Test(compat_vfio_bar, a_lost_write_combining_mapping_is_refused)
{
	struct mig_error err = { 0 };

	cr_assert_eq(compat_vfio_bar("BAR2", COMPAT_BAR_PREFETCH | COMPAT_BAR_WC,
				     COMPAT_BAR_PREFETCH, &err), -ENODEV);
	cr_assert(strstr(err.msg, "BAR2 is mapped write-combining on the source, not here") &&
		  strstr(err.msg, "attributes 0x3 on the source, 0x1 here") &&
		  strstr(err.msg, "vfio-pci"), "%s", err.msg);
	mig_error_clear(&err);
	cr_assert_eq(compat_vfio_bar("BAR4", COMPAT_BAR_PREFETCH, 0, &err), -ENODEV);
	cr_assert(strstr(err.msg, "BAR4 is prefetchable on the source, not prefetchable here"),
		  "%s", err.msg);
	mig_error_clear(&err);
	cr_assert_eq(compat_vfio_bar("BAR1", COMPAT_BAR_PREFETCH,
				     COMPAT_BAR_PREFETCH | COMPAT_BAR_WC, &err), -ENODEV);
	cr_assert(strstr(err.msg, "write-combining here, not on the source"), "%s", err.msg);
}

/* ---- the host profile ---- */

Test(compat_profile, a_profile_describes_a_smaller_host)
{
	struct compat_profile p;
	struct mig_error err = { 0 };
	uint32_t host[COMPAT_CPUID_REGS], list[] = { 0x10, 0x345, 0x6e0 };
	int ebx7 = index_of(0x7, 0, 1);

	cr_assert_eq(compat_profile_parse("memslots=8,address-spaces=1,cpuid-off=avx2,"
					  "cpuid-off=0x7.0.ebx.16,perf-caps=0x4c4,"
					  "guest-perf-caps=0x2000,msr-off=0x6e0", &p, &err), 0, "%s",
		     err.msg);
	cr_assert_eq(compat_profile_memslots(&p, 32764), 8);
	cr_assert_eq(compat_profile_memslots(&p, 4), 4, "a profile never raises a limit");
	cr_assert_eq(compat_profile_memslots(NULL, 32764), 32764);
	cr_assert_eq(compat_profile_address_spaces(&p, 2), 1);
	cr_assert_eq(compat_profile_address_spaces(&p, 0), 1);
	for (int i = 0; i < COMPAT_CPUID_REGS; i++)
		host[i] = 0xffffffffU;
	compat_profile_cpuid(&p, host);
	cr_assert_eq(host[ebx7], ~(1U << 5 | 1U << 16));
	cr_assert_eq(compat_profile_perf_caps(&p, 0), 0x4c4);
	cr_assert(p.has_guest_perf_caps && p.guest_perf_caps == 0x2000);
	cr_assert_eq(compat_profile_msrs(&p, list, 3), 2);
	cr_assert_eq(list[1], 0x345);
}

Test(compat_profile, bad_profiles_say_what_is_wrong)
{
	static const struct {
		const char *spec, *msg;
	} bad[] = {
		{ "memslots", "'memslots' is not KEY=VALUE" },
		{ "memslots=0", "memslots=0: a number of 1 or more" },
		{ "memslots=-1", "a number of 1 or more" },
		{ "cpuid-off=avx9", "give a feature name (avx2)" },
		{ "cpuid-off=0x4.0.eax.1", "not one this policy compares" },
		{ "cpuid-off=0x7.0.ebx.32", "give a feature name" },
		{ "perf-caps=zz", "a hexadecimal PERF_CAPABILITIES value" },
		{ "msr-off=0x100000000", "a hexadecimal MSR index" },
		{ "slots=4", "unknown key 'slots'" },
	};
	struct compat_profile p;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct mig_error err = { 0 };

		cr_assert_eq(compat_profile_parse(bad[i].spec, &p, &err), -EINVAL, "%s", bad[i].spec);
		cr_assert_not_null(strstr(err.msg, bad[i].msg), "%s: %s", bad[i].spec, err.msg);
	}
}
