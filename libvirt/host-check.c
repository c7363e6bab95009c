// SPDX-License-Identifier: MIT
/*
 * The hook's host checks (include/migrate/lv-hook.h): pure functions of
 * what a domain asks (struct lvh_domain) and what a host offers (struct
 * lvh_host).  Each refusal says what the domain requires, what the host
 * lacks, and what to do, in one sentence: libvirt shows it to the user of
 * `virsh migrate` as it is.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <migrate/lv-hook.h>

#include "util.h"

int lvh_list_parse(const char *s, uint64_t bits[LVH_LIST_BITS / 64])
{
	const char *p = s;

	memset(bits, 0, LVH_LIST_BITS / 8);
	if (!*s)
		return -EINVAL;
	for (;;) {
		bool neg = *p == '^';
		unsigned long a, b;
		char *end;

		if (neg)
			p++;
		if (*p < '0' || *p > '9')
			return -EINVAL;
		a = b = strtoul(p, &end, 10);
		if (*end == '-' && !neg) {
			p = end + 1;
			if (*p < '0' || *p > '9')
				return -EINVAL;
			b = strtoul(p, &end, 10);
		}
		if (a > b || b >= LVH_LIST_BITS)
			return -EINVAL;
		for (unsigned long i = a; i <= b; i++) {
			if (neg)
				bits[i / 64] &= ~(1ULL << (i % 64));
			else
				bits[i / 64] |= 1ULL << (i % 64);
		}
		if (*end == '\0')
			return 0;
		if (*end != ',')
			return -EINVAL;
		p = end + 1;
	}
}

/* The first member of `want` not in `have`, or -1. */
static int list_missing(const uint64_t *want, const uint64_t *have)
{
	for (unsigned i = 0; i < LVH_LIST_BITS / 64; i++) {
		uint64_t m = want[i] & ~have[i];

		if (m)
			return (int)(i * 64 + (unsigned)__builtin_ctzll(m));
	}
	return -1;
}

static void refuse(struct lvh_report *rep, const char *check, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void refuse(struct lvh_report *rep, const char *check, int code, const char *fmt, ...)
{
	struct lvh_refusal *f;
	va_list ap;

	if (rep->refused++ >= LVH_MAX_REFUSALS)
		return;
	f = &rep->refusals[rep->refused - 1];
	str_copy(f->check, sizeof(f->check), check);
	f->code = code;
	va_start(ap, fmt);
	vsnprintf(f->msg, sizeof(f->msg), fmt, ap);
	va_end(ap);
}

static void unchecked(struct lvh_report *rep, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void unchecked(struct lvh_report *rep, const char *fmt, ...)
{
	size_t n = strlen(rep->unchecked);
	va_list ap;

	if (n && n + 2 < sizeof(rep->unchecked)) {
		strcpy(rep->unchecked + n, "; ");
		n += 2;
	}
	va_start(ap, fmt);
	vsnprintf(rep->unchecked + n, sizeof(rep->unchecked) - n, fmt, ap);
	va_end(ap);
}

/*
 * libvirt's feature names (its cpu_map) for the bits compat compares,
 * where they differ from Linux's beyond '.' and '-' for '_': "sse4.2" is
 * "sse4_2" by that rule, these are not.
 */
static const struct { const char *libvirt, *linux_name; } feature_aliases[] = {
	{ "pni", "sse3" }, { "pclmuldq", "pclmulqdq" }, { "sha-ni", "sha_ni" },
	{ "avx512-fp16", "avx512_fp16" }, { "amx-tile", "amx_tile" }, { "avx-vnni", "avx_vnni" },
};

static int feature_bit(const char *name, unsigned *reg, unsigned *bit)
{
	char n[LVH_NAME_LEN];

	for (size_t i = 0; i < ARRAY_SIZE(feature_aliases); i++)
		if (!strcmp(name, feature_aliases[i].libvirt))
			return compat_cpuid_feature(feature_aliases[i].linux_name, reg, bit);
	str_copy(n, sizeof(n), name);
	for (char *c = n; *c; c++)
		if (*c == '.' || *c == '-')
			*c = '_';
	return compat_cpuid_feature(n, reg, bit);
}

static void check_cpu(const struct lvh_domain *d, const struct lvh_host *h,
		      struct lvh_report *rep)
{
	for (unsigned i = 0; i < d->nr_features; i++) {
		const char *f = d->features[i];
		unsigned reg, bit;

		if (feature_bit(f, &reg, &bit) < 0) {
			unchecked(rep, "CPU feature %s (no CPUID bit known for it)", f);
			continue;
		}
		if (!h->kvm) {
			unchecked(rep, "CPU feature %s (KVM could not be asked)", f);
			continue;
		}
		if (!(h->cpuid[reg] & (1U << bit)))
			refuse(rep, "cpu", -ENOTSUP, "it requires CPU feature %s, which this host's "
			       "KVM does not offer; migrate to a host with %s or drop the feature "
			       "from the domain's <cpu>", f, f);
	}
}

static void check_memslots(const struct lvh_domain *d, const struct lvh_host *h,
			   struct lvh_report *rep)
{
	unsigned devs = d->max_mem_slots > d->mem_devices ? d->max_mem_slots : d->mem_devices;
	unsigned need = devs + LVH_QEMU_SLOTS;

	if (!h->kvm) {
		if (devs)
			unchecked(rep, "memory slots (KVM could not be asked)");
		return;
	}
	if (need > h->memslots)
		refuse(rep, "memslots", -ENOSPC, "it needs %u memory slots (%u for memory devices "
		       "or <maxMemory slots>, %u for QEMU's own), and this host's KVM allows %u "
		       "(KVM_CAP_NR_MEMSLOTS); migrate to a host whose kernel allows more, or give "
		       "the domain fewer memory slots", need, devs, LVH_QEMU_SLOTS, h->memslots);
}

static void check_pmu(const struct lvh_domain *d, const struct lvh_host *h,
		      struct lvh_report *rep)
{
	if (!d->pmu)
		return;
	if (!h->kvm)
		unchecked(rep, "the PMU (KVM could not be asked)");
	else if (!h->pmu)
		refuse(rep, "pmu", -ENOTSUP, "it has a virtual PMU (<pmu state='on'/>), and this "
		       "host's KVM offers guests none (CPUID leaf 0xA); migrate to a host with "
		       "a PMU for guests, or set <pmu state='off'/>");
}

static void check_lists(const struct lvh_cpuset *sets, unsigned n, const char *online,
			const char *check, const char *what, const char *fix,
			struct lvh_report *rep)
{
	uint64_t want[LVH_LIST_BITS / 64], have[LVH_LIST_BITS / 64];
	bool have_ok = lvh_list_parse(online, have) == 0;

	for (unsigned i = 0; i < n; i++) {
		int miss;

		if (lvh_list_parse(sets[i].list, want) < 0) {
			refuse(rep, check, -EINVAL, "its %s names %s '%s', which is no list; "
			       "give a list such as 0-3,^2", sets[i].where, what, sets[i].list);
			continue;
		}
		if (!have_ok) {
			unchecked(rep, "%s of %s (this host's online list is unknown)", what,
				  sets[i].where);
			continue;
		}
		miss = list_missing(want, have);
		if (miss >= 0)
			refuse(rep, check, -ENODEV, "its %s names %s %d ('%s'), which this host "
			       "does not have online (online: %s); %s", sets[i].where, what, miss,
			       sets[i].list, online, fix);
	}
}

static void check_hugepages(const struct lvh_domain *d, const struct lvh_host *h,
			    struct lvh_report *rep)
{
	for (unsigned i = 0; d->hugepages && i < d->nr_hugepage_sizes; i++) {
		uint64_t kib = d->hugepage_kib[i] ? d->hugepage_kib[i] : h->hugepage_default_kib;
		uint64_t need;
		unsigned k;

		for (k = 0; k < h->nr_hugepages && h->hugepages[k].size_kib != kib; k++)
			;
		if (!kib || k == h->nr_hugepages) {
			refuse(rep, "hugepages", -ENOENT, "it is backed by %llu KiB huge pages, which "
			       "this host does not have (no /sys/kernel/mm/hugepages/hugepages-%llukB); "
			       "migrate to a host with that page size, or change the domain's "
			       "<memoryBacking>", (unsigned long long)kib, (unsigned long long)kib);
			continue;
		}
		/* with several sizes (per NUMA node) each could take it all:
		 * only the one size's share is checked */
		need = d->nr_hugepage_sizes == 1 ? DIV_ROUND_UP(d->mem_kib, kib) : 1;
		if (h->hugepages[k].free < need)
			refuse(rep, "hugepages", -ENOMEM, "it needs %llu free %llu KiB huge pages for "
			       "its %llu KiB of memory, and this host has %llu free; reserve more "
			       "(echo N > /sys/kernel/mm/hugepages/hugepages-%llukB/nr_hugepages) or "
			       "migrate to another host", (unsigned long long)need,
			       (unsigned long long)kib, (unsigned long long)d->mem_kib,
			       (unsigned long long)h->hugepages[k].free, (unsigned long long)kib);
	}
}

static void check_disks(const struct lvh_domain *d, const struct lvh_host *h,
			struct lvh_report *rep)
{
	for (unsigned i = 0; i < d->nr_disks; i++) {
		const struct lvh_disk *k = &d->disks[i];

		if (!h->path_ok || h->path_ok(h->arg, k->path, k->block))
			continue;
		refuse(rep, "disk", -ENOENT, "its disk %s is the %s %s, which does not exist "
		       "on this host; make it available here (shared storage, or copy it "
		       "first), or add a rewrite-path rule to hook.conf", k->target[0] ?
		       k->target : "?", k->block ? "block device" : "file", k->path);
	}
}

static void check_bridges(const struct lvh_domain *d, const struct lvh_host *h,
			  struct lvh_report *rep)
{
	for (unsigned i = 0; i < d->nr_bridges; i++)
		if (h->bridge_ok && !h->bridge_ok(h->arg, d->bridges[i]))
			refuse(rep, "bridge", -ENODEV, "its interface is on bridge %s, which this "
			       "host does not have (no /sys/class/net/%s/bridge); create the bridge "
			       "here, or migrate to a host that has it", d->bridges[i], d->bridges[i]);
}

int lvh_check(const struct lvh_domain *d, const struct lvh_host *h, struct lvh_report *ret)
{
	memset(ret, 0, sizeof(*ret));
	check_cpu(d, h, ret);
	check_memslots(d, h, ret);
	check_pmu(d, h, ret);
	check_lists(d->nodesets, d->nr_nodesets, h->nodes_online, "numa", "NUMA node",
		    "migrate to a host with that node, or change the domain's <numatune>", ret);
	check_hugepages(d, h, ret);
	check_lists(d->cpusets, d->nr_cpusets, h->cpus_online, "pinning", "CPU",
		    "set this host's CPUs with a cpuset rule in hook.conf, or change the "
		    "domain's pinning", ret);
	check_disks(d, h, ret);
	check_bridges(d, h, ret);
	if (d->dropped)
		unchecked(ret, "%u items past the first %u of a kind", d->dropped, LVH_MAX_ITEMS);
	return ret->refused ? ret->refusals[0].code : 0;
}
