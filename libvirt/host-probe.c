// SPDX-License-Identifier: MIT
/*
 * This host as the hook's checks see it (struct lvh_host): KVM's CPUID and
 * memory slots with the agent's --host-profile applied, and sysfs.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/kvm.h>

#include <migrate/lv-hook.h>

#include "util.h"

static void read_line(const char *path, char *buf, size_t n)
{
	FILE *f = fopen(path, "re");

	buf[0] = '\0';
	if (!f)
		return;
	if (fgets(buf, (int)n, f))
		buf[strcspn(buf, "\n")] = '\0';
	fclose(f);
}

#if defined(__x86_64__) || defined(__i386__)
/* KVM_GET_SUPPORTED_CPUID's entries: fails with E2BIG while nent is short. */
static struct kvm_cpuid2 *supported_cpuid(int kvm)
{
	for (unsigned nent = 128; nent <= 4096; nent *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + nent * sizeof(c->entries[0]));

		if (!c)
			return NULL;
		c->nent = nent;
		if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, c) == 0)
			return c;
		free(c);
		if (errno != E2BIG)
			return NULL;
	}
	return NULL;
}

static uint32_t entry_reg(const struct kvm_cpuid_entry2 *e, unsigned reg)
{
	return reg == 0 ? e->eax : reg == 1 ? e->ebx : reg == 2 ? e->ecx : e->edx;
}

static bool probe_cpuid(int kvm, struct lvh_host *h)
{
	struct kvm_cpuid2 *c = supported_cpuid(kvm);

	if (!c)
		return false;
	for (unsigned i = 0; i < c->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &c->entries[i];

		for (unsigned k = 0; k < COMPAT_CPUID_REGS; k++)
			if (compat_cpuid_features[k].leaf == e->function &&
			    compat_cpuid_features[k].subleaf == e->index)
				h->cpuid[k] = entry_reg(e, compat_cpuid_features[k].reg);
		/* architectural performance monitoring: its version in EAX[7:0] */
		if (e->function == 0xa)
			h->pmu = (e->eax & 0xff) != 0;
	}
	free(c);
	return true;
}
#else
static bool probe_cpuid(int kvm, struct lvh_host *h)
{
	(void)kvm;
	(void)h;
	return false;
}
#endif

static void probe_kvm(const struct compat_profile *profile, struct lvh_host *h)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	int slots;

	if (kvm < 0)
		return;
	slots = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS);
	if (slots > 0 && probe_cpuid(kvm, h)) {
		h->kvm = true;
		h->memslots = compat_profile_memslots(profile, (uint32_t)slots);
		compat_profile_cpuid(profile, h->cpuid);
	}
	close(kvm);
}

static void probe_hugepages(struct lvh_host *h)
{
	DIR *d = opendir("/sys/kernel/mm/hugepages");
	struct dirent *e;
	char meminfo[128];
	FILE *f;

	while (d && (e = readdir(d)) && h->nr_hugepages < LVH_MAX_HUGEPAGE_SIZES) {
		unsigned long long kib;
		char path[300], v[32];

		if (sscanf(e->d_name, "hugepages-%llukB", &kib) != 1)
			continue;
		snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/%s/free_hugepages", e->d_name);
		read_line(path, v, sizeof(v));
		h->hugepages[h->nr_hugepages].size_kib = kib;
		h->hugepages[h->nr_hugepages++].free = strtoull(v, NULL, 10);
	}
	if (d)
		closedir(d);
	f = fopen("/proc/meminfo", "re");
	while (f && fgets(meminfo, sizeof(meminfo), f))
		if (sscanf(meminfo, "Hugepagesize: %llu kB",
			   (unsigned long long *)&h->hugepage_default_kib) == 1)
			break;
	if (f)
		fclose(f);
}

static bool path_ok(void *arg, const char *path, bool block)
{
	struct stat st;

	(void)arg;
	return stat(path, &st) == 0 && (block ? S_ISBLK(st.st_mode) : !S_ISDIR(st.st_mode));
}

static bool bridge_ok(void *arg, const char *name)
{
	char path[128];
	struct stat st;

	(void)arg;
	if (strchr(name, '/') || !strcmp(name, "..") || !strcmp(name, "."))
		return false;
	snprintf(path, sizeof(path), "/sys/class/net/%s/bridge", name);
	return stat(path, &st) == 0;
}

void lvh_host_probe(const struct compat_profile *profile, struct lvh_host *ret)
{
	memset(ret, 0, sizeof(*ret));
	if (gethostname(ret->name, sizeof(ret->name) - 1) < 0)
		str_copy(ret->name, sizeof(ret->name), "?");
	probe_kvm(profile, ret);
	read_line("/sys/devices/system/cpu/online", ret->cpus_online, sizeof(ret->cpus_online));
	read_line("/sys/devices/system/node/online", ret->nodes_online, sizeof(ret->nodes_online));
	if (!ret->nodes_online[0])   /* a kernel without NUMA: one node */
		str_copy(ret->nodes_online, sizeof(ret->nodes_online), "0");
	probe_hugepages(ret);
	ret->path_ok = path_ok;
	ret->bridge_ok = bridge_ok;
}
