// SPDX-License-Identifier: MIT
/*
 * Host compatibility policies (docs/policies.md): pure functions of what a
 * VM needs and what a host offers, run at SETUP before anything stops, each
 * refusing with the field, both values, and what to do.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

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

int compat_cpuid_feature(const char *name, unsigned *ret_reg_index, unsigned *ret_bit)
{
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (!strcmp(names[i].name, name)) {
			*ret_reg_index = names[i].reg_index;
			*ret_bit = names[i].bit;
			return 0;
		}
	return -ENOENT;
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

/* ---- memory slots ---- */

int compat_memslots(const struct compat_memslots *vm, uint32_t nr_memslots, uint32_t nr_as,
		    struct mig_error *err)
{
	if (!nr_as)
		nr_as = 1;   /* KVM_CAP_MULTI_ADDRESS_SPACE 0: the one address space */
	for (uint32_t as = 0; as < COMPAT_ADDRESS_SPACES; as++) {
		uint32_t need = vm->slots[as] > vm->id_end[as] ? vm->slots[as] : vm->id_end[as];

		if (!need)
			continue;
		if (as >= nr_as)
			return mig_error_set(err, -ENOSPC, "memory slots: the VM has %u slots in "
					     "address space %u%s, and this host's KVM has %u address "
					     "space%s (KVM_CAP_MULTI_ADDRESS_SPACE): migrate to a host "
					     "whose KVM has it (x86: SMM support), or start the guest "
					     "without it", vm->slots[as], as, as == 1 ? " (x86: SMM)" : "",
					     nr_as, nr_as == 1 ? "" : "s");
		if (need > nr_memslots)
			return mig_error_set(err, -ENOSPC, "memory slots: the VM needs %u slots in "
					     "address space %u (%u slots, ids up to %u), and this "
					     "host's KVM allows %u (KVM_CAP_NR_MEMSLOTS): migrate to a "
					     "host whose kernel allows more (x86 kernels before 5.12 "
					     "allowed 509), or give the guest fewer, larger slots", need,
					     as, vm->slots[as], vm->id_end[as] ? vm->id_end[as] - 1 : 0,
					     nr_memslots);
	}
	return 0;
}

/* ---- PERF_CAPABILITIES ---- */

int compat_perf_caps(uint64_t guest, uint64_t host, struct mig_error *err)
{
	uint64_t missing = guest & ~host;

	/* PEBS first: its rule is stricter than the subset, and says more. */
	if ((guest & COMPAT_PERF_CAP_PEBS_FORMAT) &&
	    (guest & COMPAT_PERF_CAP_PEBS_MASK) != (host & COMPAT_PERF_CAP_PEBS_MASK))
		return mig_error_set(err, -ENOTSUP, "PMU: the guest was given PEBS format %llu "
				     "(PERF_CAPABILITIES %#llx, PEBS bits %#llx), and this host's KVM "
				     "offers format %llu (PERF_CAPABILITIES %#llx, PEBS bits %#llx): "
				     "KVM takes a guest's PEBS only where the PEBS bits are exactly "
				     "equal; migrate to a host with the same PEBS format (the same "
				     "CPU generation and kernel), or start the guest without PEBS",
				     (unsigned long long)((guest & COMPAT_PERF_CAP_PEBS_FORMAT) >> 8),
				     (unsigned long long)guest,
				     (unsigned long long)(guest & COMPAT_PERF_CAP_PEBS_MASK),
				     (unsigned long long)((host & COMPAT_PERF_CAP_PEBS_FORMAT) >> 8),
				     (unsigned long long)host,
				     (unsigned long long)(host & COMPAT_PERF_CAP_PEBS_MASK));
	if (missing)
		return mig_error_set(err, -ENOTSUP, "PMU: the guest was given PERF_CAPABILITIES "
				     "%#llx, and this host's KVM supports %#llx (bits %#llx "
				     "missing%s): KVM_SET_MSRS would refuse it after the guest "
				     "stopped; migrate to a host with the same PMU (and "
				     "kvm.enable_pmu=Y), or start the guest with a PMU both hosts "
				     "offer", (unsigned long long)guest, (unsigned long long)host,
				     (unsigned long long)missing,
				     host ? "" : "; this host offers guests no PMU capabilities");
	return 0;
}

/* ---- MSRs ---- */

static const struct {
	uint32_t index;
	const char *name;
} msr_names[] = {
	{ 0x10, "IA32_TSC" }, { 0x3a, "IA32_FEATURE_CONTROL" }, { 0x3b, "IA32_TSC_ADJUST" },
	{ 0x48, "IA32_SPEC_CTRL" }, { 0x10a, "IA32_ARCH_CAPABILITIES" },
	{ 0x1a0, "IA32_MISC_ENABLE" }, { 0x345, "IA32_PERF_CAPABILITIES" },
	{ 0x3f1, "IA32_PEBS_ENABLE" }, { 0x3f2, "PEBS_DATA_CFG" }, { 0x600, "IA32_DS_AREA" },
	{ 0x6e0, "IA32_TSC_DEADLINE" }, { 0xc0000103, "TSC_AUX" },
	{ 0x4b564d00, "KVM_WALL_CLOCK_NEW" }, { 0x4b564d01, "KVM_SYSTEM_TIME_NEW" },
	{ 0x4b564d02, "KVM_ASYNC_PF_EN" }, { 0x4b564d03, "KVM_STEAL_TIME" },
	{ 0x4b564d04, "KVM_PV_EOI_EN" }, { 0x4b564d05, "KVM_POLL_CONTROL" },
	{ 0x4b564d06, "KVM_ASYNC_PF_INT" }, { 0x4b564d07, "KVM_ASYNC_PF_ACK" },
};

static bool msr_in(const uint32_t *list, unsigned n, uint32_t index)
{
	for (unsigned i = 0; i < n; i++)
		if (list[i] == index)
			return true;
	return false;
}

int compat_msrs(const uint32_t *guest, unsigned n, const uint32_t *host, unsigned m,
		struct mig_error *err)
{
	unsigned missing = 0, first = 0;
	const char *name = NULL;

	for (unsigned i = 0; i < n; i++)
		if (!msr_in(host, m, guest[i]) && !missing++)
			first = i;
	if (!missing)
		return 0;
	for (size_t k = 0; k < ARRAY_SIZE(msr_names); k++)
		if (msr_names[k].index == guest[first])
			name = msr_names[k].name;
	return mig_error_set(err, -ENOTSUP, "MSRs: the guest's saved state has MSR %#x%s%s%s, "
			     "which this host's KVM does not accept (in neither "
			     "KVM_GET_MSR_INDEX_LIST nor the feature MSR list; %u of the guest's "
			     "%u MSRs): KVM_SET_MSRS would refuse it after the guest stopped; "
			     "migrate to a host whose kernel and KVM settings (PMU, nested) "
			     "have it", guest[first], name ? " (" : "", name ? name : "",
			     name ? ")" : "", missing, n);
}

static size_t varint_put(uint8_t *out, size_t at, size_t cap, uint32_t v, bool *full)
{
	do {
		if (at >= cap) {
			*full = true;
			return at;
		}
		out[at++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
	return at;
}

static int varint_get(const uint8_t *p, size_t len, size_t *at, uint32_t *ret)
{
	uint64_t v = 0;

	for (unsigned shift = 0; shift < 35; shift += 7) {
		if (*at >= len)
			return -EBADMSG;
		v |= (uint64_t)(p[*at] & 0x7f) << shift;
		if (!(p[(*at)++] & 0x80))
			break;
		if (shift == 28)
			return -EBADMSG;
	}
	if (v > UINT32_MAX)
		return -EBADMSG;
	*ret = (uint32_t)v;
	return 0;
}

int compat_msrs_encode(const uint32_t *sorted, unsigned n, uint8_t *out, size_t cap)
{
	uint64_t next = 0;   /* one past the previous run */
	bool full = false;
	size_t at = 0;

	for (unsigned i = 0; i < n;) {
		unsigned len = 1;

		if (sorted[i] < next)
			return -EINVAL;   /* not sorted, or twice */
		while (i + len < n && sorted[i + len] == sorted[i] + len)
			len++;
		at = varint_put(out, at, cap, (uint32_t)(sorted[i] - next), &full);
		at = varint_put(out, at, cap, len - 1, &full);
		if (full)
			return -E2BIG;
		next = (uint64_t)sorted[i] + len;
		i += len;
	}
	return (int)at;
}

int compat_msrs_decode(const uint8_t *p, size_t len, uint32_t *out, unsigned max)
{
	uint64_t next = 0;
	unsigned n = 0;
	size_t at = 0;

	while (at < len) {
		uint32_t gap, extra;

		if (varint_get(p, len, &at, &gap) < 0 || varint_get(p, len, &at, &extra) < 0 ||
		    next + gap + extra > UINT32_MAX)
			return -EBADMSG;
		if (n + (uint64_t)extra + 1 > max)
			return -E2BIG;
		for (uint64_t k = 0; k <= extra; k++)
			out[n++] = (uint32_t)(next + gap + k);
		next += (uint64_t)gap + extra + 1;
	}
	return (int)n;
}

/* ---- VFIO BARs ---- */

int compat_vfio_bar(const char *name, uint32_t src, uint32_t dst, struct mig_error *err)
{
	if ((src ^ dst) & COMPAT_BAR_PREFETCH)
		return mig_error_set(err, -ENODEV, "%s is %sprefetchable on the source, %s"
				     "prefetchable here: the guest reads that bit; give the VM the "
				     "same device model and firmware here", name,
				     src & COMPAT_BAR_PREFETCH ? "" : "not ",
				     dst & COMPAT_BAR_PREFETCH ? "" : "not ");
	if ((src & COMPAT_BAR_WC) && !(dst & COMPAT_BAR_WC))
		return mig_error_set(err, -ENODEV, "%s is mapped write-combining on the source, "
				     "not here (attributes %#x on the source, %#x here): the guest's "
				     "writes to it would lose their combining; use a host whose "
				     "vfio-pci maps prefetchable BARs write-combining", name, src, dst);
	if (!(src & COMPAT_BAR_WC) && (dst & COMPAT_BAR_WC))
		return mig_error_set(err, -ENODEV, "%s is mapped write-combining here, not on the "
				     "source (attributes %#x on the source, %#x here): the guest's "
				     "driver saw its writes kept apart and in order; use a host whose "
				     "vfio-pci maps it as the source's does", name, src, dst);
	return 0;
}

/* ---- describing a different host ---- */

static int hex_u64(const char *s, uint64_t *ret)
{
	uint64_t v = 0;
	size_t i = 0;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		s += 2;
	for (; s[i]; i++) {
		char c = s[i];
		unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0') :
			     c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10) :
			     c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10) : 16;

		if (d == 16 || i >= 16)
			return -EINVAL;
		v = v << 4 | d;
	}
	if (!i)
		return -EINVAL;
	*ret = v;
	return 0;
}

static int dec_u32(const char *s, uint32_t *ret)
{
	uint64_t v = 0;

	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > UINT32_MAX / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	if (v > UINT32_MAX)
		return -EINVAL;
	*ret = (uint32_t)v;
	return 0;
}

/* NAME or LEAF.SUBLEAF.REG.BIT (LEAF hex, REG eax..edx) into a register's
 * index and bit. */
static int cpuid_bit(const char *v, unsigned *reg_index, unsigned *bit)
{
	char leaf_s[16], sub_s[8], reg_s[8], bit_s[8];
	uint64_t leaf;
	uint32_t sub, b;

	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (!strcmp(names[i].name, v)) {
			*reg_index = names[i].reg_index;
			*bit = names[i].bit;
			return 0;
		}
	if (sscanf(v, "%15[0-9a-fA-Fx].%7[0-9].%7[a-zA-Z].%7[0-9]", leaf_s, sub_s, reg_s,
		   bit_s) != 4 || hex_u64(leaf_s, &leaf) < 0 || dec_u32(sub_s, &sub) < 0 ||
	    dec_u32(bit_s, &b) < 0 || b > 31)
		return -EINVAL;
	for (unsigned i = 0; i < COMPAT_CPUID_REGS; i++) {
		const struct compat_cpuid_reg *r = &compat_cpuid_features[i];

		if (r->leaf == leaf && r->subleaf == sub && !strcasecmp(reg_names[r->reg], reg_s)) {
			*reg_index = i;
			*bit = b;
			return 0;
		}
	}
	return -ENOENT;
}

int compat_profile_parse(const char *spec, struct compat_profile *ret, struct mig_error *err)
{
	char buf[512], *save = NULL;

	memset(ret, 0, sizeof(*ret));
	if (strlen(spec) >= sizeof(buf))
		return mig_error_set(err, -EINVAL, "host profile: longer than %zu characters",
				     sizeof(buf) - 1);
	str_copy(buf, sizeof(buf), spec);
	for (char *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *v = strchr(kv, '=');
		uint64_t x;
		unsigned reg, bit;
		int r;

		if (!v || !v[1])
			return mig_error_set(err, -EINVAL, "host profile: '%s' is not KEY=VALUE "
					     "(memslots, address-spaces, cpuid-off, perf-caps, "
					     "guest-perf-caps, msr-off)", kv);
		*v++ = '\0';
		if (!strcmp(kv, "memslots") || !strcmp(kv, "address-spaces")) {
			uint32_t n;

			if (dec_u32(v, &n) < 0 || n == 0)
				return mig_error_set(err, -EINVAL, "host profile: %s=%s: a number of "
						     "1 or more", kv, v);
			*(kv[0] == 'm' ? &ret->memslots : &ret->address_spaces) = n;
		} else if (!strcmp(kv, "cpuid-off")) {
			r = cpuid_bit(v, &reg, &bit);
			if (r < 0)
				return mig_error_set(err, -EINVAL, "host profile: cpuid-off=%s: %s", v,
						     r == -ENOENT ? "that register is not one this "
						     "policy compares (docs/policies.md lists them)" :
						     "give a feature name (avx2) or LEAF.SUBLEAF.REG.BIT "
						     "(0x7.0.ebx.5)");
			ret->cpuid_off[reg] |= 1U << bit;
		} else if (!strcmp(kv, "perf-caps") || !strcmp(kv, "guest-perf-caps")) {
			if (hex_u64(v, &x) < 0)
				return mig_error_set(err, -EINVAL, "host profile: %s=%s: a hexadecimal "
						     "PERF_CAPABILITIES value (0x4c4)", kv, v);
			if (kv[0] == 'p') {
				ret->has_perf_caps = true;
				ret->perf_caps = x;
			} else {
				ret->has_guest_perf_caps = true;
				ret->guest_perf_caps = x;
			}
		} else if (!strcmp(kv, "msr-off")) {
			if (hex_u64(v, &x) < 0 || x > UINT32_MAX)
				return mig_error_set(err, -EINVAL, "host profile: msr-off=%s: a "
						     "hexadecimal MSR index (0x345)", v);
			if (ret->nr_msr_off == COMPAT_PROFILE_MSRS)
				return mig_error_set(err, -EINVAL, "host profile: more than %u "
						     "msr-off", COMPAT_PROFILE_MSRS);
			ret->msr_off[ret->nr_msr_off++] = (uint32_t)x;
		} else {
			return mig_error_set(err, -EINVAL, "host profile: unknown key '%s' (memslots, "
					     "address-spaces, cpuid-off, perf-caps, guest-perf-caps, "
					     "msr-off)", kv);
		}
	}
	return 0;
}

uint32_t compat_profile_memslots(const struct compat_profile *p, uint32_t kvm)
{
	return p && p->memslots && p->memslots < kvm ? p->memslots : kvm;
}

uint32_t compat_profile_address_spaces(const struct compat_profile *p, uint32_t kvm)
{
	if (!kvm)
		kvm = 1;
	return p && p->address_spaces && p->address_spaces < kvm ? p->address_spaces : kvm;
}

void compat_profile_cpuid(const struct compat_profile *p, uint32_t *host)
{
	for (unsigned i = 0; p && i < COMPAT_CPUID_REGS; i++)
		host[i] &= ~p->cpuid_off[i];
}

uint64_t compat_profile_perf_caps(const struct compat_profile *p, uint64_t kvm)
{
	return p && p->has_perf_caps ? p->perf_caps : kvm;
}

unsigned compat_profile_msrs(const struct compat_profile *p, uint32_t *list, unsigned n)
{
	unsigned k = 0;

	for (unsigned i = 0; i < n; i++)
		if (!p || !msr_in(p->msr_off, p->nr_msr_off, list[i]))
			list[k++] = list[i];
	return k;
}

static struct compat_profile profile;
static bool profile_set;

void compat_profile_set(const struct compat_profile *p)
{
	if (p)
		profile = *p;
	profile_set = p != NULL;
}

const struct compat_profile *compat_profile_get(void)
{
	return profile_set ? &profile : NULL;
}
