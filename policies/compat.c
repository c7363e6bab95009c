// SPDX-License-Identifier: MIT
/*
 * Host compatibility policies (docs/policies.md): pure functions of what a
 * VM needs and what a host offers, run at SETUP before anything stops, each
 * refusing with the field, both values, and what to do.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <migrate/policy.h>

#include "util.h"

/* The registers whose bits are features a guest sees (leaf, subleaf,
 * register: 0 EAX, 1 EBX, 2 ECX, 3 EDX). */
const struct compat_cpuid_reg compat_cpuid_features[COMPAT_CPUID_REGS] = {
	{ 0x1, 0, 2 }, { 0x1, 0, 3 },
	{ 0x7, 0, 1 }, { 0x7, 0, 2 }, { 0x7, 0, 3 }, { 0x7, 1, 0 },
	{ 0xd, 1, 0 },
	{ 0x80000001, 0, 2 }, { 0x80000001, 0, 3 },
	{ 0x80000007, 0, 3 }, { 0x80000008, 0, 1 },
};

/* Bits that report the guest's own state, not a feature (CR4.OSXSAVE,
 * CR4.PKE): no host "supports" them, every host lets a guest set them. */
static const uint32_t dynamic_bits[COMPAT_CPUID_REGS] = {
	[0] = 1U << 27,     /* 1.ECX OSXSAVE */
	[3] = 1U << 4,      /* 7.0.ECX OSPKE */
};

struct bit_name {
	uint8_t reg_index;        /* in compat_cpuid_features */
	uint8_t bit;
	const char *name;
};

/* The features an operator is likely to meet, by name (Linux's names). */
static const struct bit_name names[] = {
	{ 0, 0, "sse3" }, { 0, 1, "pclmulqdq" }, { 0, 9, "ssse3" }, { 0, 12, "fma" },
	{ 0, 13, "cx16" }, { 0, 19, "sse4_1" }, { 0, 20, "sse4_2" }, { 0, 21, "x2apic" },
	{ 0, 22, "movbe" }, { 0, 23, "popcnt" }, { 0, 25, "aes" }, { 0, 26, "xsave" },
	{ 0, 28, "avx" }, { 0, 29, "f16c" }, { 0, 30, "rdrand" },
	{ 1, 25, "sse" }, { 1, 26, "sse2" },
	{ 2, 3, "bmi1" }, { 2, 5, "avx2" }, { 2, 8, "bmi2" }, { 2, 9, "erms" },
	{ 2, 16, "avx512f" }, { 2, 17, "avx512dq" }, { 2, 18, "rdseed" }, { 2, 19, "adx" },
	{ 2, 29, "sha_ni" }, { 2, 30, "avx512bw" }, { 2, 31, "avx512vl" },
	{ 3, 1, "avx512vbmi" }, { 3, 9, "vaes" }, { 3, 10, "vpclmulqdq" }, { 3, 16, "la57" },
	{ 3, 22, "rdpid" },
	{ 4, 23, "avx512_fp16" }, { 4, 24, "amx_tile" },
	{ 5, 4, "avx_vnni" },
	{ 6, 0, "xsaveopt" }, { 6, 1, "xsavec" }, { 6, 3, "xsaves" },
	{ 7, 0, "lahf_lm" }, { 7, 5, "abm" }, { 7, 6, "sse4a" },
	{ 8, 20, "nx" }, { 8, 26, "pdpe1gb" }, { 8, 27, "rdtscp" }, { 8, 29, "lm" },
};

static const char *const reg_names[4] = { "EAX", "EBX", "ECX", "EDX" };

static const char *bit_name(unsigned reg_index, unsigned bit)
{
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (names[i].reg_index == reg_index && names[i].bit == bit)
			return names[i].name;
	return NULL;
}

int compat_cpuid(const uint32_t *guest, const uint32_t *host, struct mig_error *err)
{
	for (unsigned i = 0; i < COMPAT_CPUID_REGS; i++) {
		const struct compat_cpuid_reg *r = &compat_cpuid_features[i];
		uint32_t missing = guest[i] & ~host[i] & ~dynamic_bits[i];
		unsigned bit, more;
		const char *name;

		if (!missing)
			continue;
		bit = (unsigned)__builtin_ctz(missing);
		more = (unsigned)__builtin_popcount(missing) - 1;
		name = bit_name(i, bit);
		return mig_error_set(err, -ENOTSUP, "CPUID: the guest sees %s%s(leaf %#x.%u %s bit %u)"
				     "%s, which this host's KVM does not offer "
				     "(KVM_GET_SUPPORTED_CPUID %s is %#x, the guest's %#x): migrate "
				     "to a host whose CPU and kernel have it, or start the guest with "
				     "a CPU model both hosts support", name ? name : "",
				     name ? " " : "", r->leaf, r->subleaf, reg_names[r->reg], bit,
				     more ? " and more of that register" : "", reg_names[r->reg],
				     host[i], guest[i]);
	}
	return 0;
}
