/* SPDX-License-Identifier: MIT */
/*
 * libvirt's qemu hook (docs/libvirt.md): what a domain's XML asks of
 * the host it is about to run on, the site's rewrite rules for host-local
 * names in it, and the host checks, each a pure function of the XML and
 * a description of the host (struct lvh_host), which lvh_host_probe()
 * fills from this host and a test writes by hand.  Library code: errors
 * through struct mig_error, nothing printed.
 *
 * The XML is read with libxml2; a build without it (a cross build) has
 * every function here fail with -ENOTSUP and says so.
 */
#ifndef MIGRATE_LV_HOOK_H
#define MIGRATE_LV_HOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <migrate/error.h>
#include <migrate/policy.h>

/* ---- the site's rules (hook.conf) ---- */

#define LVH_MAX_REWRITES 16
#define LVH_PATH_MAX 256
struct lvh_rules {
	struct {
		char from[LVH_PATH_MAX], to[LVH_PATH_MAX];
	} rewrite[LVH_MAX_REWRITES];
	unsigned nr_rewrites;
	char cpuset[128];         /* "": no cpuset rule */
};

/* Applies the rules to the domain XML xml[0..len): the host-local paths
 * (disk sources, serial/console/channel sources and logs, loader, nvram)
 * that start with a rule's FROM (as a whole path component) get its TO
 * instead, first rule first; every cpuset of <vcpu>, <vcpupin>,
 * <emulatorpin> and <iothreadpin> becomes the cpuset rule's list.
 * *ret_out is the XML again, malloc'ed and NUL-terminated, and *ret_changed
 * says whether any rule applied.  -EINVAL for XML that is not a domain. */
int lvh_rewrite(const char *xml, size_t len, const struct lvh_rules *rules, char **ret_out,
		size_t *ret_len, bool *ret_changed, struct mig_error *err);

/* ---- the hook's configuration (hook.conf) ---- */

#define LVH_CONF_DEFAULT "/etc/migratectl/hook.conf"
#define LVH_AGENT_DEFAULT "unix:///run/migratectl/agent.sock"
#define LVH_TIMEOUT_DEFAULT_MS 10000
struct lvh_conf {
	char agent[256];          /* ENDPOINT */
	char key_file[256];       /* "": none */
	uint64_t timeout_ms;      /* the hook's deadline over all it does */
	bool strict;              /* no agent, or no answer in time: refuse */
	struct lvh_rules rules;
};
/* The defaults. */
void lvh_conf_init(struct lvh_conf *ret);
/* The text of a config file `name` over *conf: "KEY = VALUE" lines
 * (agent, key-file, timeout, strict) and rule lines ("rewrite-path FROM
 * TO", "cpuset LIST"); '#' starts a comment.  -EINVAL as "NAME:LINE: what
 * is wrong". */
int lvh_conf_parse(const char *text, const char *name, struct lvh_conf *conf,
		   struct mig_error *err);
/* The file at path over *conf: a missing file is the defaults when
 * !must_exist, else an error (like any unreadable one). */
int lvh_conf_load(const char *path, bool must_exist, struct lvh_conf *conf,
		  struct mig_error *err);

/* ---- what a domain asks of a host ---- */

#define LVH_MAX_ITEMS 64          /* features, disks, cpusets, nodesets, bridges each */
#define LVH_NAME_LEN 64
struct lvh_disk {
	char path[LVH_PATH_MAX];
	char target[32];          /* "vda", for messages */
	bool block;               /* type='block': a device, else type='file' */
};
struct lvh_cpuset {
	char where[32];           /* "<vcpupin vcpu='1'>", for messages */
	char list[128];
};
struct lvh_domain {
	char name[LVH_NAME_LEN];
	char uuid[37];            /* lowercase; "" when the XML has none */
	uint64_t mem_kib;         /* <memory> */
	/* <cpu><feature policy='require'|'force' name=...> */
	char features[LVH_MAX_ITEMS][LVH_NAME_LEN];
	unsigned nr_features;
	char cpu_model[LVH_NAME_LEN];  /* <cpu><model>, for messages */
	bool pmu;                 /* <features><pmu state='on'/> */
	unsigned mem_devices;     /* <devices><memory> (DIMMs, NVDIMMs, virtio-mem/pmem) */
	unsigned max_mem_slots;   /* <maxMemory slots=N> (0: none) */
	struct lvh_cpuset nodesets[LVH_MAX_ITEMS];   /* numatune's */
	unsigned nr_nodesets;
	bool hugepages;           /* <memoryBacking><hugepages> */
	uint64_t hugepage_kib[8]; /* its <page size>s; 0: the host's default size */
	unsigned nr_hugepage_sizes;
	struct lvh_cpuset cpusets[LVH_MAX_ITEMS];
	unsigned nr_cpusets;
	struct lvh_disk disks[LVH_MAX_ITEMS];
	unsigned nr_disks;
	char bridges[LVH_MAX_ITEMS][LVH_NAME_LEN];
	unsigned nr_bridges;
	unsigned dropped;         /* items past LVH_MAX_ITEMS, not checked */
};

/* The domain XML xml[0..len) read: -EINVAL naming what is wrong. */
int lvh_domain_parse(const char *xml, size_t len, struct lvh_domain *ret, struct mig_error *err);

/* ---- the host ---- */

#define LVH_MAX_HUGEPAGE_SIZES 8
struct lvh_host {
	char name[64];            /* for messages */
	bool kvm;                 /* cpuid, memslots and pmu below are known */
	uint32_t cpuid[COMPAT_CPUID_REGS];  /* KVM_GET_SUPPORTED_CPUID, the profile applied */
	uint32_t memslots;        /* KVM_CAP_NR_MEMSLOTS, the profile applied */
	bool pmu;                 /* KVM offers guests a PMU (CPUID 0xA: a version) */
	char cpus_online[256];    /* /sys/devices/system/cpu/online */
	char nodes_online[256];   /* /sys/devices/system/node/online ("0" without NUMA) */
	uint64_t hugepage_default_kib;
	struct {
		uint64_t size_kib;
		uint64_t free;
	} hugepages[LVH_MAX_HUGEPAGE_SIZES];
	unsigned nr_hugepages;
	/* lookups: a path that exists (block: a block device), a bridge */
	bool (*path_ok)(void *arg, const char *path, bool block);
	bool (*bridge_ok)(void *arg, const char *name);
	void *arg;
};

/* This host, as its KVM (with `profile`, NULL for none: agent
 * --host-profile), sysfs and /proc say; the lookups see its files.
 * Where /dev/kvm cannot be asked, kvm is false and the checks that need
 * it say they could not check.  Never fails. */
void lvh_host_probe(const struct compat_profile *profile, struct lvh_host *ret);

/* QEMU's memory slots besides the memory devices: RAM below and above
 * 4 GiB, the firmware and option ROMs, video RAM (an allowance). */
#define LVH_QEMU_SLOTS 16

/* ---- the checks ---- */

#define LVH_MAX_REFUSALS 16
struct lvh_refusal {
	char check[16];           /* "cpu", "memslots", "pmu", "numa", "hugepages", "pinning",
				   * "disk", "bridge" */
	int code;                 /* -errno */
	char msg[400];            /* "it requires ...; <the fix>" */
};
struct lvh_report {
	unsigned refused;         /* in all */
	struct lvh_refusal refusals[LVH_MAX_REFUSALS];   /* the first ones, in check order */
	/* what could not be checked (features without a known bit, no KVM) */
	char unchecked[400];
};

/* Every check of d against h, in the order above: 0 when none refuses,
 * else the first refusal's code; all of them in ret. */
int lvh_check(const struct lvh_domain *d, const struct lvh_host *h, struct lvh_report *ret);

/* A CPU or node list ("0-3,^2,8") into bits[0..1024): -EINVAL when it is
 * none, or names one over 1023. */
#define LVH_LIST_BITS 1024
int lvh_list_parse(const char *s, uint64_t bits[LVH_LIST_BITS / 64]);

#endif
