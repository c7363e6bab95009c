// SPDX-License-Identifier: MIT
/*
 * libvirt's qemu hook (docs/libvirt.md): the domain XML read
 * (libvirt/domain-xml.c), every host check passing and refusing on host
 * facts made by hand (libvirt/host-check.c), the site's rewrite rules, the
 * config file; then `migratectl hook` as libvirt runs it (a minimal
 * environment, the XML on stdin) against a real agent: a refusal, a pass,
 * journal records, no agent, strict, a stopped agent.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <migrate/agent.h>
#include <migrate/control.h>
#include <migrate/lv-hook.h>
#include <migrate/wire.h>

#include "util.h"

/* A domain as `virsh dumpxml --migratable` gives one, with one of each
 * thing the checks look at.  @D@ is a scratch directory. */
static const char full_xml[] =
	"<domain type='kvm'>\n"
	"  <name>lvtest</name>\n"
	"  <uuid>5F0C6A1E-3B9D-4C7E-9A41-0123456789AB</uuid>\n"
	"  <maxMemory slots='4' unit='KiB'>4194304</maxMemory>\n"
	"  <memory unit='MiB'>64</memory>\n"
	"  <currentMemory unit='KiB'>65536</currentMemory>\n"
	"  <memoryBacking><hugepages><page size='2' unit='M'/></hugepages></memoryBacking>\n"
	"  <vcpu placement='static' cpuset='0-1'>2</vcpu>\n"
	"  <cputune>\n"
	"    <vcpupin vcpu='0' cpuset='0'/>\n"
	"    <vcpupin vcpu='1' cpuset='1'/>\n"
	"    <emulatorpin cpuset='0-1'/>\n"
	"    <iothreadpin iothread='1' cpuset='1'/>\n"
	"  </cputune>\n"
	"  <numatune>\n"
	"    <memory mode='strict' nodeset='0'/>\n"
	"    <memnode cellid='0' mode='strict' nodeset='0'/>\n"
	"  </numatune>\n"
	"  <os>\n"
	"    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>\n"
	"    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>\n"
	"    <nvram template='/usr/share/OVMF/OVMF_VARS.fd'>@D@/nvram/lvtest_VARS.fd</nvram>\n"
	"  </os>\n"
	"  <features><acpi/><apic/><pmu state='on'/></features>\n"
	"  <cpu mode='custom' match='exact' check='full'>\n"
	"    <model fallback='forbid'>Haswell-noTSX</model>\n"
	"    <feature policy='require' name='sse4.2'/>\n"
	"    <feature policy='force' name='pni'/>\n"
	"    <feature policy='disable' name='avx512f'/>\n"
	"    <feature policy='optional' name='avx2'/>\n"
	"    <feature policy='require' name='invtsc'/>\n"
	"  </cpu>\n"
	"  <devices>\n"
	"    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n"
	"    <disk type='file' device='disk'>\n"
	"      <driver name='qemu' type='qcow2'/>\n"
	"      <source file='@D@/images/root.qcow2'/>\n"
	"      <target dev='vda' bus='virtio'/>\n"
	"    </disk>\n"
	"    <disk type='block' device='disk'>\n"
	"      <source dev='/dev/mapper/data'/>\n"
	"      <target dev='vdb' bus='virtio'/>\n"
	"    </disk>\n"
	"    <disk type='file' device='cdrom'>\n"
	"      <target dev='sda' bus='sata'/><readonly/>\n"
	"    </disk>\n"
	"    <disk type='network' device='disk'>\n"
	"      <source protocol='rbd' name='pool/img'><host name='mon1' port='6789'/></source>\n"
	"      <target dev='vdc' bus='virtio'/>\n"
	"    </disk>\n"
	"    <interface type='bridge'>\n"
	"      <mac address='52:54:00:12:34:56'/><source bridge='br0'/><model type='virtio'/>\n"
	"    </interface>\n"
	"    <interface type='network'><source network='default'/></interface>\n"
	"    <serial type='file'>\n"
	"      <source path='@D@/logs/console.log'/><log file='@D@/logs/serial.log'/>\n"
	"      <target port='0'/>\n"
	"    </serial>\n"
	"    <console type='file'><source path='@D@/logs/console.log'/></console>\n"
	"    <memory model='dimm'><target><size unit='MiB'>128</size><node>0</node></target>"
	"</memory>\n"
	"    <memballoon model='none'/>\n"
	"  </devices>\n"
	"</domain>\n";

/* The lab's domain (../shared/lab/libvirt/lvtest.xml): nothing to check
 * but a disk. */
static const char small_xml[] =
	"<domain type='kvm'>\n"
	"  <name>lvtest</name>\n"
	"  <uuid>5f0c6a1e-3b9d-4c7e-9a41-0123456789ab</uuid>\n"
	"  <memory unit='MiB'>32</memory>\n"
	"  <vcpu>1</vcpu>\n"
	"  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>\n"
	"  <devices>\n"
	"    <disk type='file' device='disk'>\n"
	"      <driver name='qemu' type='raw'/>\n"
	"      <source file='@D@/disk.img'/>\n"
	"      <target dev='hda' bus='ide'/>\n"
	"    </disk>\n"
	"    <serial type='file'><source path='@D@/inst/A/console.log'/><target port='0'/></serial>\n"
	"    <memballoon model='none'/>\n"
	"  </devices>\n"
	"</domain>\n";

/* tmpl with @D@ replaced by dir (malloc'ed). */
static char *xml_in(const char *tmpl, const char *dir)
{
	size_t n = strlen(tmpl) * 2 + 1, o = 0;
	char *out = malloc(n + 64 * strlen(dir));

	cr_assert_not_null(out);
	for (const char *p = tmpl; *p;) {
		if (!strncmp(p, "@D@", 3)) {
			strcpy(out + o, dir);
			o += strlen(dir);
			p += 3;
		} else {
			out[o++] = *p++;
		}
	}
	out[o] = '\0';
	return out;
}

static struct lvh_domain *parse(const char *xml)
{
	static struct lvh_domain d;
	struct mig_error err = { 0 };

	cr_assert_eq(lvh_domain_parse(xml, strlen(xml), &d, &err), 0, "%s", err.msg);
	return &d;
}

Test(domain_xml, a_full_domain)
{
	char *xml = xml_in(full_xml, "/srv/a");
	struct lvh_domain *d = parse(xml);

	cr_assert_str_eq(d->name, "lvtest");
	cr_assert_str_eq(d->uuid, "5f0c6a1e-3b9d-4c7e-9a41-0123456789ab", "lowercased");
	cr_assert_eq(d->mem_kib, 65536);
	cr_assert_eq(d->nr_features, 3, "require and force only");
	cr_assert_str_eq(d->features[0], "sse4.2");
	cr_assert_str_eq(d->features[1], "pni");
	cr_assert_str_eq(d->features[2], "invtsc");
	cr_assert_str_eq(d->cpu_model, "Haswell-noTSX");
	cr_assert(d->pmu);
	cr_assert_eq(d->mem_devices, 1);
	cr_assert_eq(d->max_mem_slots, 4);
	cr_assert_eq(d->nr_nodesets, 2);
	cr_assert_str_eq(d->nodesets[1].where, "<memnode cellid='0'>");
	cr_assert(d->hugepages);
	cr_assert_eq(d->nr_hugepage_sizes, 1);
	cr_assert_eq(d->hugepage_kib[0], 2048);
	cr_assert_eq(d->nr_cpusets, 5);
	cr_assert_str_eq(d->cpusets[0].where, "<vcpu>");
	cr_assert_str_eq(d->cpusets[2].where, "<vcpupin vcpu='1'>");
	cr_assert_str_eq(d->cpusets[2].list, "1");
	cr_assert_str_eq(d->cpusets[4].where, "<iothreadpin iothread='1'>");
	cr_assert_eq(d->nr_disks, 2, "no cdrom without a medium, no network disk");
	cr_assert_str_eq(d->disks[0].path, "/srv/a/images/root.qcow2");
	cr_assert_str_eq(d->disks[0].target, "vda");
	cr_assert(!d->disks[0].block);
	cr_assert_str_eq(d->disks[1].path, "/dev/mapper/data");
	cr_assert(d->disks[1].block);
	cr_assert_eq(d->nr_bridges, 1);
	cr_assert_str_eq(d->bridges[0], "br0");
	free(xml);
}

Test(domain_xml, what_is_no_domain_is_refused)
{
	struct lvh_domain d;
	struct mig_error err = { 0 };

	cr_assert_eq(lvh_domain_parse("<domain><name>x", 15, &d, &err), -EINVAL);
	cr_assert(strstr(err.msg, "does not parse"), "%s", err.msg);
	mig_error_clear(&err);
	cr_assert_eq(lvh_domain_parse("<network/>", 10, &d, &err), -EINVAL);
	cr_assert(strstr(err.msg, "not a libvirt domain"), "%s", err.msg);
	/* defaults: no hugepages, no pmu, nothing to pin */
	parse("<domain><name>x</name><memory>1024</memory></domain>");
}

/* ---- the checks on hand-made hosts ---- */

static const char *present[] = { "/srv/a/images/root.qcow2", "/dev/mapper/data", NULL };

static bool fake_path(void *arg, const char *path, bool block)
{
	(void)arg;
	for (unsigned i = 0; present[i]; i++)
		if (!strcmp(present[i], path))
			return block == !strncmp(path, "/dev/", 5);
	return false;
}

static bool fake_bridge(void *arg, const char *name)
{
	return !strcmp(name, arg ? (const char *)arg : "br0");
}

/* A host that takes full_xml. */
static void good_host(struct lvh_host *h)
{
	memset(h, 0, sizeof(*h));
	str_copy(h->name, sizeof(h->name), "hostb");
	h->kvm = true;
	for (unsigned i = 0; i < COMPAT_CPUID_REGS; i++)
		h->cpuid[i] = UINT32_MAX;
	h->memslots = 509;
	h->pmu = true;
	str_copy(h->cpus_online, sizeof(h->cpus_online), "0-3");
	str_copy(h->nodes_online, sizeof(h->nodes_online), "0-1");
	h->hugepage_default_kib = 2048;
	h->hugepages[0].size_kib = 2048;
	h->hugepages[0].free = 32;
	h->hugepages[1].size_kib = 1048576;
	h->nr_hugepages = 2;
	h->path_ok = fake_path;
	h->bridge_ok = fake_bridge;
}

static void cpu_off(struct lvh_host *h, const char *linux_name)
{
	unsigned reg, bit;

	cr_assert_eq(compat_cpuid_feature(linux_name, &reg, &bit), 0, "%s", linux_name);
	h->cpuid[reg] &= ~(1U << bit);
}

static void no_sse42(struct lvh_host *h) { cpu_off(h, "sse4_2"); }
static void no_sse3(struct lvh_host *h) { cpu_off(h, "sse3"); }
static void few_slots(struct lvh_host *h) { h->memslots = 19; }
static void no_pmu(struct lvh_host *h) { h->pmu = false; }
static void one_node(struct lvh_host *h) { str_copy(h->nodes_online, 256, "1"); }
static void no_2m_pages(struct lvh_host *h) { h->hugepages[0].size_kib = 4; }
static void few_pages(struct lvh_host *h) { h->hugepages[0].free = 31; }
static void one_cpu(struct lvh_host *h) { str_copy(h->cpus_online, 256, "0"); }
static void no_disk(struct lvh_host *h) { present[0] = "/srv/b/images/root.qcow2"; (void)h; }
static void no_bridge(struct lvh_host *h) { h->arg = (void *)"br1"; }

Test(host_check, a_good_host_takes_it)
{
	char *xml = xml_in(full_xml, "/srv/a");
	struct lvh_host h;
	struct lvh_report rep;

	good_host(&h);
	cr_assert_eq(lvh_check(parse(xml), &h, &rep), 0, "%s", rep.refusals[0].msg);
	cr_assert_eq(rep.refused, 0);
	/* invtsc is no bit compat compares: said, not refused */
	cr_assert(strstr(rep.unchecked, "CPU feature invtsc"), "%s", rep.unchecked);
	free(xml);
}

/* Each check alone refuses on a host that lacks its one thing, with the
 * problem and the fix in the message. */
Test(host_check, each_check_refuses_with_its_message)
{
	static const struct {
		void (*spoil)(struct lvh_host *h);
		const char *check;
		int code;
		const char *says, *fix;
	} cases[] = {
		{ no_sse42, "cpu", -ENOTSUP, "it requires CPU feature sse4.2, which this host's KVM "
		  "does not offer", "migrate to a host with sse4.2 or drop the feature from the "
		  "domain's <cpu>" },
		{ no_sse3, "cpu", -ENOTSUP, "CPU feature pni,", "migrate to a host with pni" },
		{ few_slots, "memslots", -ENOSPC, "it needs 20 memory slots (4 for memory devices "
		  "or <maxMemory slots>, 16 for QEMU's own), and this host's KVM allows 19",
		  "give the domain fewer memory slots" },
		{ no_pmu, "pmu", -ENOTSUP, "this host's KVM offers guests none", "<pmu state='off'/>" },
		{ one_node, "numa", -ENODEV, "its <numatune><memory> names NUMA node 0 ('0'), which "
		  "this host does not have online (online: 1)", "change the domain's <numatune>" },
		{ no_2m_pages, "hugepages", -ENOENT, "2048 KiB huge pages, which this host does "
		  "not have", "change the domain's <memoryBacking>" },
		{ few_pages, "hugepages", -ENOMEM, "it needs 32 free 2048 KiB huge pages for its "
		  "65536 KiB of memory, and this host has 31 free", "reserve more" },
		{ one_cpu, "pinning", -ENODEV, "its <vcpu> names CPU 1 ('0-1'), which this host does "
		  "not have online (online: 0)", "cpuset rule in hook.conf" },
		{ no_disk, "disk", -ENOENT, "its disk vda is the file /srv/a/images/root.qcow2, "
		  "which does not exist on this host", "rewrite-path" },
		{ no_bridge, "bridge", -ENODEV, "its interface is on bridge br0, which this host "
		  "does not have", "create the bridge here" },
	};
	char *xml = xml_in(full_xml, "/srv/a");
	struct lvh_domain *d = parse(xml);

	for (unsigned i = 0; i < ARRAY_SIZE(cases); i++) {
		const char *keep = present[0];
		struct lvh_report rep;
		struct lvh_host h;

		good_host(&h);
		cases[i].spoil(&h);
		cr_assert_eq(lvh_check(d, &h, &rep), cases[i].code, "%s", cases[i].check);
		present[0] = keep;
		cr_assert_str_eq(rep.refusals[0].check, cases[i].check);
		cr_assert(strstr(rep.refusals[0].msg, cases[i].says), "%s: %s", cases[i].check,
			  rep.refusals[0].msg);
		cr_assert(strstr(rep.refusals[0].msg, cases[i].fix), "%s: %s", cases[i].check,
			  rep.refusals[0].msg);
		cr_assert_null(strchr(rep.refusals[0].msg, '\n'), "one line");
	}
	free(xml);
}

/* Several refusals: all counted, the first in check order first. */
Test(host_check, several_refusals_are_counted)
{
	char *xml = xml_in(full_xml, "/srv/a");
	struct lvh_report rep;
	struct lvh_host h;

	good_host(&h);
	no_bridge(&h);
	no_pmu(&h);
	one_cpu(&h);   /* <vcpu>, vcpupin 1, emulatorpin, iothreadpin: 4 */
	cr_assert_lt(lvh_check(parse(xml), &h, &rep), 0);
	cr_assert_eq(rep.refused, 6);
	cr_assert_str_eq(rep.refusals[0].check, "pmu");
	cr_assert_str_eq(rep.refusals[5].check, "bridge");
	free(xml);
}

/* A host whose KVM could not be asked: the KVM checks say so, none refuses. */
Test(host_check, without_kvm_the_kvm_checks_are_unchecked)
{
	char *xml = xml_in(full_xml, "/srv/a");
	struct lvh_report rep;
	struct lvh_host h;

	good_host(&h);
	h.kvm = false;
	h.memslots = 0;
	h.pmu = false;
	cr_assert_eq(lvh_check(parse(xml), &h, &rep), 0, "%s", rep.refusals[0].msg);
	cr_assert(strstr(rep.unchecked, "KVM could not be asked"), "%s", rep.unchecked);
	free(xml);
}

Test(host_check, lists)
{
	uint64_t b[LVH_LIST_BITS / 64];

	cr_assert_eq(lvh_list_parse("0-3,^2,8", b), 0);
	cr_assert_eq(b[0], 0x10bULL);
	cr_assert_eq(lvh_list_parse("1023", b), 0);
	cr_assert_eq(b[15], 1ULL << 63);
	cr_assert_lt(lvh_list_parse("1024", b), 0);
	cr_assert_lt(lvh_list_parse("3-1", b), 0);
	cr_assert_lt(lvh_list_parse("", b), 0);
	cr_assert_lt(lvh_list_parse("1,", b), 0);
	cr_assert_lt(lvh_list_parse("a", b), 0);
}

/* ---- the site's rules ---- */

static char *rewrite(const char *xml, const struct lvh_rules *rules, bool *changed)
{
	struct mig_error err = { 0 };
	size_t len;
	char *out;

	cr_assert_eq(lvh_rewrite(xml, strlen(xml), rules, &out, &len, changed, &err), 0, "%s",
		     err.msg);
	cr_assert_eq(len, strlen(out));
	return out;
}

Test(rewrite, paths_and_cpusets)
{
	struct lvh_rules rules = { .nr_rewrites = 3, .cpuset = "2-3" };
	char *xml = xml_in(full_xml, "/srv/a"), *out;
	struct lvh_domain *d;
	bool changed;

	strcpy(rules.rewrite[0].from, "/srv/a/logs");
	strcpy(rules.rewrite[0].to, "/var/log/b");
	strcpy(rules.rewrite[1].from, "/srv/a");
	strcpy(rules.rewrite[1].to, "/srv/b");
	strcpy(rules.rewrite[2].from, "/usr/share/OVMF");
	strcpy(rules.rewrite[2].to, "/opt/ovmf");
	out = rewrite(xml, &rules, &changed);
	cr_assert(changed);
	d = parse(out);
	cr_assert_str_eq(d->disks[0].path, "/srv/b/images/root.qcow2");
	cr_assert_str_eq(d->disks[1].path, "/dev/mapper/data", "no rule for it");
	cr_assert(strstr(out, "<source path=\"/var/log/b/console.log\"/><log "
			 "file=\"/var/log/b/serial.log\"/>"), "the first rule first: %s", out);
	cr_assert(strstr(out, "<console type=\"file\"><source path=\"/var/log/b/console.log\"/>"),
		  "%s", out);
	cr_assert(strstr(out, ">/opt/ovmf/OVMF_CODE.fd</loader>"), "%s", out);
	cr_assert(strstr(out, "template=\"/opt/ovmf/OVMF_VARS.fd\">/srv/b/nvram/lvtest_VARS.fd"
			 "</nvram>"), "%s", out);
	for (unsigned i = 0; i < d->nr_cpusets; i++)
		cr_assert_str_eq(d->cpusets[i].list, "2-3", "%s", d->cpusets[i].where);
	cr_assert(strstr(out, "<name>lvtest</name>"), "the rest kept");
	/* pinning is checked after the rule: a host with CPUs 2-3 only */
	{
		struct lvh_report rep;
		struct lvh_host h;

		good_host(&h);
		present[0] = "/srv/b/images/root.qcow2";
		str_copy(h.cpus_online, sizeof(h.cpus_online), "2-3");
		cr_assert_eq(lvh_check(d, &h, &rep), 0, "%s", rep.refusals[0].msg);
		present[0] = "/srv/a/images/root.qcow2";
	}
	free(out);
	free(xml);
}

/* A FROM matches whole path components only; no rule that applies: the
 * very same bytes and changed false. */
Test(rewrite, nothing_applies_nothing_changes)
{
	struct lvh_rules rules = { .nr_rewrites = 1 };
	char *xml = xml_in(small_xml, "/srv/ab"), *out;
	bool changed = true;

	strcpy(rules.rewrite[0].from, "/srv/a");
	strcpy(rules.rewrite[0].to, "/srv/z");
	out = rewrite(xml, &rules, &changed);
	cr_assert(!changed);
	cr_assert_str_eq(out, xml);
	free(out);
	/* no cpuset anywhere: the cpuset rule adds none */
	rules.nr_rewrites = 0;
	strcpy(rules.cpuset, "0");
	out = rewrite(xml, &rules, &changed);
	cr_assert(!changed);
	free(out);
	free(xml);
}

/* ---- hook.conf ---- */

Test(conf, a_full_file)
{
	struct lvh_conf c;
	struct mig_error err = { 0 };

	lvh_conf_init(&c);
	cr_assert_str_eq(c.agent, LVH_AGENT_DEFAULT);
	cr_assert_eq(c.timeout_ms, 10000);
	cr_assert(!c.strict);
	cr_assert_eq(lvh_conf_parse("# the site\n\nagent = tcp://10.0.0.2:7000\n"
				    "key-file = /etc/migratectl/key  # tcp\n"
				    "timeout = 2500ms\nstrict = yes\n"
				    "rewrite-path /srv/a /srv/b\n"
				    "  rewrite-path /x=y /z\ncpuset 0-3,^1\n", "t.conf", &c, &err),
		     0, "%s", err.msg);
	cr_assert_str_eq(c.agent, "tcp://10.0.0.2:7000");
	cr_assert_str_eq(c.key_file, "/etc/migratectl/key");
	cr_assert_eq(c.timeout_ms, 2500);
	cr_assert(c.strict);
	cr_assert_eq(c.rules.nr_rewrites, 2);
	cr_assert_str_eq(c.rules.rewrite[1].from, "/x=y");
	cr_assert_str_eq(c.rules.cpuset, "0-3,^1");
}

Test(conf, errors_name_the_file_and_line)
{
	static const struct {
		const char *text, *says;
	} bad[] = {
		{ "agent = ftp://x\n", "t.conf:1: agent = ftp://x" },
		{ "\n# c\ntimeout = soon\n", "t.conf:3: timeout = soon" },
		{ "timeout = 0\n", "t.conf:1: timeout" },
		{ "strict = maybe\n", "t.conf:1: strict = maybe: yes or no" },
		{ "key-file = rel/key\n", "t.conf:1: key-file" },
		{ "colour = blue\n", "t.conf:1: unknown key 'colour'" },
		{ "agent =\n", "t.conf:1: agent has no value" },
		{ "rewrite-path /a\n", "t.conf:1: rewrite-path takes FROM and TO" },
		{ "rewrite-path a /b\n", "t.conf:1: rewrite-path a /b: both must be absolute" },
		{ "cpuset 0-x\n", "t.conf:1: cpuset takes one CPU list" },
		{ "\n\nfrobnicate\n", "t.conf:3: unknown line 'frobnicate'" },
	};

	for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
		struct mig_error err = { 0 };
		struct lvh_conf c;

		lvh_conf_init(&c);
		cr_assert_eq(lvh_conf_parse(bad[i].text, "t.conf", &c, &err), -EINVAL, "%s",
			     bad[i].text);
		cr_assert(strstr(err.msg, bad[i].says), "%s", err.msg);
	}
}

Test(conf, a_missing_file)
{
	struct mig_error err = { 0 };
	struct lvh_conf c;

	lvh_conf_init(&c);
	cr_assert_eq(lvh_conf_load("/nonexistent/hook.conf", false, &c, &err), 0,
		     "the default file may be missing");
	cr_assert_str_eq(c.agent, LVH_AGENT_DEFAULT);
	cr_assert_lt(lvh_conf_load("/nonexistent/hook.conf", true, &c, &err), 0,
		     "a --config file may not");
	cr_assert(strstr(err.msg, "/nonexistent/hook.conf"), "%s", err.msg);
}

/* contrib/libvirt/hook.conf.example says what the parser takes: as it
 * ships (all commented: the defaults) and with every setting uncommented. */
Test(conf, the_example_is_true)
{
	FILE *f = fopen(MIGRATECTL_SRC "/contrib/libvirt/hook.conf.example", "r");
	char text[8192], open_text[8192];
	size_t n, o = 0;
	struct mig_error err = { 0 };
	struct lvh_conf c;

	cr_assert_not_null(f);
	n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	lvh_conf_init(&c);
	cr_assert_eq(lvh_conf_parse(text, "example", &c, &err), 0, "%s", err.msg);
	cr_assert_eq(c.rules.nr_rewrites, 0);
	for (size_t i = 0; i < n; i++)   /* "#k" at a line's start: uncommented */
		if (!(text[i] == '#' && (i == 0 || text[i - 1] == '\n') && text[i + 1] >= 'a' &&
		      text[i + 1] <= 'z'))
			open_text[o++] = text[i];
	open_text[o] = '\0';
	cr_assert_eq(lvh_conf_parse(open_text, "example", &c, &err), 0, "%s", err.msg);
	cr_assert_eq(c.rules.nr_rewrites, 2);
	cr_assert_str_eq(c.rules.cpuset, "2-7");
	cr_assert_str_eq(c.key_file, "/etc/migratectl/agent.key");
}

/* ---- `migratectl hook` as libvirt runs it, against a real agent ---- */

struct hook_result {
	int status;
	double secs;
	char out[16384], err[4096];
};

static void slurp(const char *path, char *buf, size_t n)
{
	FILE *f = fopen(path, "r");
	size_t got = f ? fread(buf, 1, n - 1, f) : 0;

	buf[got] = '\0';
	if (f)
		fclose(f);
}

/* Runs `migratectl hook --config CONF DOMAIN OP SUBOP -` with xml on stdin,
 * as libvirtd does: LC_ALL=C and PATH only, no fds but 0-2. */
static void hook(const char *dir, const char *conf, const char *op, const char *subop,
		 const char *xml, struct hook_result *r)
{
	char in[256], out[256], err[256];
	uint64_t t0 = mig_now_ms();
	int st;
	pid_t pid;
	FILE *f;

	snprintf(in, sizeof(in), "%s/stdin", dir);
	snprintf(out, sizeof(out), "%s/stdout", dir);
	snprintf(err, sizeof(err), "%s/stderr", dir);
	f = fopen(in, "w");
	cr_assert_not_null(f);
	fputs(xml, f);
	fclose(f);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		char *const env[] = { "LC_ALL=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL };
		char *const argv[] = { "migratectl", "hook", "--config", (char *)conf, "lvtest",
				       (char *)op, (char *)subop, "-", NULL };

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (dup2(open(in, O_RDONLY), 0) < 0 || dup2(open(out, O_WRONLY | O_CREAT |
		    O_TRUNC, 0600), 1) < 0 || dup2(open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600),
		    2) < 0)
			_exit(126);
		closefrom(3);
		execve(MIGRATECTL_PATH, argv, env);
		_exit(127);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	r->secs = (double)(mig_now_ms() - t0) / 1000;
	cr_assert(WIFEXITED(st), "the hook did not exit normally");
	r->status = WEXITSTATUS(st);
	slurp(out, r->out, sizeof(r->out));
	slurp(err, r->err, sizeof(r->err));
}

static unsigned lines(const char *s)
{
	unsigned n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

struct site {
	char dir[64];
	char sock[128], journal[128], conf[128];
	pid_t agent;
};

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

/* An agent (cpuid-off=avx2: no host offers it, as far as the checks see)
 * with a journal file, a config naming it, and the small domain's disk. */
static void site_start(struct site *s, const char *extra_conf)
{
	char text[1024], path[200];
	struct stat st;

	strcpy(s->dir, "/tmp/migratectl-hook-XXXXXX");
	cr_assert_not_null(mkdtemp(s->dir));
	snprintf(s->sock, sizeof(s->sock), "%s/agent.sock", s->dir);
	snprintf(s->journal, sizeof(s->journal), "%s/journal", s->dir);
	snprintf(s->conf, sizeof(s->conf), "%s/hook.conf", s->dir);
	snprintf(path, sizeof(path), "%s/disk.img", s->dir);
	write_file(path, "");
	snprintf(text, sizeof(text), "agent = unix://%s\ntimeout = 5s\n%s", s->sock, extra_conf);
	write_file(s->conf, text);
	s->agent = fork();
	cr_assert_geq(s->agent, 0);
	if (s->agent == 0) {
		const char *argv[] = { "migratectl", "agent", "--listen", NULL, "--quiet",
				       "--journal", s->journal, "--host-profile", "cpuid-off=avx2",
				       NULL };
		char listen[160];

		snprintf(listen, sizeof(listen), "unix://%s", s->sock);
		argv[3] = listen;
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execv(MIGRATECTL_PATH, (char *const *)argv);
		_exit(127);
	}
	for (int i = 0; i < 200 && stat(s->sock, &st) < 0; i++)
		usleep(50000);
	cr_assert_eq(stat(s->sock, &st), 0, "the agent never listened");
}

static void site_stop(struct site *s)
{
	char cmd[128];

	if (s->agent > 0) {
		kill(s->agent, SIGKILL);
		waitpid(s->agent, NULL, 0);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", s->dir);
	cr_assert_eq(system(cmd), 0);
}

static const char avx2_cpu[] = "<cpu mode='custom' match='exact'><model>Haswell</model>"
			       "<feature policy='require' name='avx2'/></cpu>";

/* The small domain, with more before </devices>'s parent ends. */
static char *small_with(const char *dir, const char *extra)
{
	char *xml = xml_in(small_xml, dir), *at = strstr(xml, "</domain>");
	char *out = malloc(strlen(xml) + strlen(extra) + 1);

	cr_assert_not_null(out);
	sprintf(out, "%.*s%s</domain>\n", (int)(at - xml), xml, extra);
	free(xml);
	return out;
}

Test(hook_proc, a_refusal_is_one_line_and_exit_1)
{
	struct site s;
	struct hook_result r;
	char *xml;

	site_start(&s, "");
	xml = small_with(s.dir, avx2_cpu);
	hook(s.dir, s.conf, "migrate", "begin", xml, &r);
	cr_assert_eq(r.status, 1, "%s", r.err);
	cr_assert_eq(lines(r.err), 1, "exactly one line: %s", r.err);
	cr_assert(!strncmp(r.err, "migratectl: host ", 17), "%s", r.err);
	cr_assert(strstr(r.err, " cannot take domain lvtest: it requires CPU feature avx2, which "
			 "this host's KVM does not offer; migrate to a host with avx2 or drop "
			 "the feature from the domain's <cpu>\n"), "%s", r.err);
	cr_assert_str_eq(r.out, "");
	/* a second refusal: counted on the same line */
	free(xml);
	xml = small_with(s.dir, "<vcpu cpuset='1000'>1</vcpu>"
			 "<cputune><emulatorpin cpuset='1001'/></cputune>");
	memcpy(strstr(xml, "<devices>"), "<devicez>", 9);   /* no disk: its checks only */
	memcpy(strstr(xml, "</devices>"), "</devicez>", 10);
	hook(s.dir, s.conf, "restore", "begin", xml, &r);
	cr_assert_eq(r.status, 1, "%s", r.err);
	cr_assert_eq(lines(r.err), 1, "%s", r.err);
	cr_assert(strstr(r.err, "<vcpu> names CPU 1000") &&
		  strstr(r.err, "; set this host's CPUs with a cpuset rule in hook.conf, or change "
			 "the domain's pinning (and 1 more: see the agent's log)\n"), "%s", r.err);
	free(xml);
	site_stop(&s);
}

Test(hook_proc, a_pass_prints_the_rewritten_xml_only)
{
	struct site s;
	struct hook_result r;
	char rule[512], *xml;

	site_start(&s, "");
	xml = xml_in(small_xml, s.dir);
	/* no rule applies: empty stdout keeps the XML */
	hook(s.dir, s.conf, "migrate", "begin", xml, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "");
	cr_assert_str_eq(r.err, "");
	/* a rule for the serial log's directory */
	snprintf(rule, sizeof(rule), "agent = unix://%s\nrewrite-path %s/inst/A %s/inst/B\n",
		 s.sock, s.dir, s.dir);
	write_file(s.conf, rule);
	hook(s.dir, s.conf, "migrate", "begin", xml, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);
	snprintf(rule, sizeof(rule), "<source path=\"%s/inst/B/console.log\"/>", s.dir);
	cr_assert(strstr(r.out, rule), "%s", r.out);
	cr_assert(strstr(r.out, "<uuid>5f0c6a1e-3b9d-4c7e-9a41-0123456789ab</uuid>"), "%s", r.out);
	/* a disk that is missing here refuses */
	snprintf(rule, sizeof(rule), "%s/disk.img", s.dir);
	unlink(rule);
	hook(s.dir, s.conf, "migrate", "begin", xml, &r);
	cr_assert_eq(r.status, 1, "%s", r.err);
	cr_assert(strstr(r.err, "its disk hda is the file"), "%s", r.err);
	cr_assert_str_eq(r.out, "");
	free(xml);
	site_stop(&s);
}

/* Every call a record: the UUID and the op, in the --journal file and
 * through MIG_OP_JOURNAL (`migratectl journal --json`). */
Test(hook_proc, journal_records)
{
	static const char *const ops[] = { "prepare", "start", "started", "stopped", "release",
					   "reconnect" };
	char cmd[512], want[128], *xml, *file = malloc(65536);
	struct hook_result r;
	struct site s;
	FILE *p;
	size_t n;

	site_start(&s, "");
	xml = xml_in(small_xml, s.dir);
	for (unsigned i = 0; i < ARRAY_SIZE(ops); i++) {
		hook(s.dir, s.conf, ops[i], i < 3 || i == 5 ? "begin" : "end", xml, &r);
		cr_assert_eq(r.status, 0, "%s: %s", ops[i], r.err);
		cr_assert_str_eq(r.out, "", "%s", ops[i]);
	}
	slurp(s.journal, file, 65536);
	cr_assert_eq(lines(file), ARRAY_SIZE(ops), "%s", file);
	snprintf(cmd, sizeof(cmd), "%s journal unix://%s --json", MIGRATECTL_PATH, s.sock);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	n = fread(r.out, 1, sizeof(r.out) - 1, p);
	r.out[n] = '\0';
	cr_assert_eq(pclose(p), 0);
	for (unsigned i = 0; i < ARRAY_SIZE(ops); i++) {
		snprintf(want, sizeof(want), "\"vm\":\"5f0c6a1e-3b9d-4c7e-9a41-0123456789ab\","
			 "\"mig\":null,\"vcpu\":0,\"event\":\"hook\",\"hook\":\"%s\"", ops[i]);
		cr_assert(strstr(file, want), "%s: %s", want, file);
		cr_assert(strstr(r.out, want), "%s: %s", want, r.out);
	}
	free(xml);
	free(file);
	site_stop(&s);
}

/* No agent: through, one line; strict: refused (but never at reconnect,
 * where libvirt would kill QEMU). */
Test(hook_proc, no_agent_and_strict)
{
	struct hook_result r;
	struct site s;
	char *xml;

	site_start(&s, "");
	xml = small_with(s.dir, avx2_cpu);
	kill(s.agent, SIGKILL);
	waitpid(s.agent, NULL, 0);
	s.agent = 0;
	hook(s.dir, s.conf, "migrate", "begin", xml, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "");
	cr_assert_eq(lines(r.err), 1, "%s", r.err);
	cr_assert(strstr(r.err, "no agent") && strstr(r.err, "let through unchecked"), "%s", r.err);
	write_file(s.conf, "agent = unix:///nonexistent/agent.sock\nstrict = yes\n");
	hook(s.dir, s.conf, "migrate", "begin", xml, &r);
	cr_assert_eq(r.status, 1, "%s", r.err);
	cr_assert_eq(lines(r.err), 1, "%s", r.err);
	cr_assert(strstr(r.err, "refused, as strict = yes asks"), "%s", r.err);
	hook(s.dir, s.conf, "prepare", "begin", xml, &r);
	cr_assert_eq(r.status, 1, "%s", r.err);
	hook(s.dir, s.conf, "reconnect", "begin", xml, &r);
	cr_assert_eq(r.status, 0, "reconnect never fails: %s", r.err);
	free(xml);
	site_stop(&s);
}

/* A stopped agent takes the connection (the socket's backlog) and never
 * answers: the hook ends at its timeout all the same. */
Test(hook_proc, a_stopped_agent_costs_the_timeout_only)
{
	struct hook_result r;
	struct site s;
	char text[512], *xml;

	site_start(&s, "");
	xml = xml_in(small_xml, s.dir);
	snprintf(text, sizeof(text), "agent = unix://%s\ntimeout = 1s\n", s.sock);
	write_file(s.conf, text);
	cr_assert_eq(kill(s.agent, SIGSTOP), 0);
	hook(s.dir, s.conf, "migrate", "begin", xml, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_lt(r.secs, 5.0, "the hook took %.1f s with timeout = 1s", r.secs);
	cr_assert_geq(r.secs, 0.9, "it gave up before its timeout: %.1f s", r.secs);
	cr_assert(strstr(r.err, "no answer from the agent") &&
		  strstr(r.err, "within 1000 ms"), "%s", r.err);
	snprintf(text, sizeof(text), "agent = unix://%s\ntimeout = 1s\nstrict = yes\n", s.sock);
	write_file(s.conf, text);
	hook(s.dir, s.conf, "started", "begin", xml, &r);
	cr_assert_eq(r.status, 1, "%s", r.err);
	cr_assert_lt(r.secs, 5.0);
	kill(s.agent, SIGCONT);
	free(xml);
	site_stop(&s);
}

/* What libvirt may hand a hook that it cannot use. */
Test(hook_proc, bad_input)
{
	struct hook_result r;
	struct site s;
	char *big;

	site_start(&s, "");
	hook(s.dir, s.conf, "migrate", "begin", "<domain><name>x", &r);
	cr_assert_eq(r.status, 1, "%s", r.err);
	cr_assert(strstr(r.err, "does not parse"), "%s", r.err);
	big = malloc(MIG_HOOK_XML_MAX + 2);
	memset(big, ' ', MIG_HOOK_XML_MAX + 1);
	big[MIG_HOOK_XML_MAX + 1] = '\0';
	/* too big to carry: let through, unless strict */
	hook(s.dir, s.conf, "migrate", "begin", big, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.err, "over 65448 bytes"), "%s", r.err);
	cr_assert(strstr(r.err, "let through unchecked"), "%s", r.err);
	write_file(s.conf, "strict = yes\n");
	hook(s.dir, s.conf, "migrate", "begin", big, &r);
	cr_assert_eq(r.status, 1, "%s", r.err);
	free(big);
	hook(s.dir, s.conf, "attach", "begin", "", &r);
	cr_assert_eq(r.status, 0, "an operation it does not know: nothing to do");
	write_file(s.conf, "strict = sometimes\n");
	hook(s.dir, s.conf, "migrate", "begin", "", &r);
	cr_assert_eq(r.status, 1);
	cr_assert(strstr(r.err, "hook.conf:1: strict = sometimes"), "%s", r.err);
	site_stop(&s);
}

/* contrib/libvirt/install.sh into a scratch root: the hook in qemu.d, a
 * site's own qemu script untouched, the example config only where there
 * is none, the SIGHUP advice when qemu.d is new; the installed wrapper
 * runs this migratectl with MIGRATECTL_HOOK_CONF. */
Test(hook_proc, install_into_a_scratch_root)
{
	char root[] = "/tmp/migratectl-hookroot-XXXXXX", cmd[1024], path[256], buf[4096];
	struct run { int status; char out[4096]; } r;
	struct stat st;
	FILE *p;
	size_t n;

	cr_assert_not_null(mkdtemp(root));
	snprintf(cmd, sizeof(cmd), "mkdir -p %s/etc/libvirt/hooks && printf 'site\\n' > "
		 "%s/etc/libvirt/hooks/qemu", root, root);
	cr_assert_eq(system(cmd), 0);
	for (int round = 0; round < 2; round++) {
		snprintf(cmd, sizeof(cmd), "DESTDIR=%s sh %s/contrib/libvirt/install.sh --bin %s 2>&1",
			 root, MIGRATECTL_SRC, MIGRATECTL_PATH);
		p = popen(cmd, "r");
		cr_assert_not_null(p);
		n = fread(r.out, 1, sizeof(r.out) - 1, p);
		r.out[n] = '\0';
		r.status = pclose(p);
		cr_assert_eq(r.status, 0, "%s", r.out);
		cr_assert_eq(strstr(r.out, "SIGHUP") != NULL, round == 0, "round %d: %s", round, r.out);
		cr_assert(strstr(r.out, round ? "kept " : "installed "), "%s", r.out);
	}
	snprintf(path, sizeof(path), "%s/etc/libvirt/hooks/qemu", root);
	slurp(path, buf, sizeof(buf));
	cr_assert_str_eq(buf, "site\n", "the site's own hook is left alone");
	snprintf(path, sizeof(path), "%s/etc/libvirt/hooks/qemu.d/50-migratectl", root);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert(st.st_mode & S_IXUSR, "executable");
	slurp(path, buf, sizeof(buf));
	cr_assert(strstr(buf, "MIGRATECTL=${MIGRATECTL:-" MIGRATECTL_PATH "}"), "%s", buf);
	/* the wrapper, as libvirtd runs it: a strict config without agent refuses */
	snprintf(cmd, sizeof(cmd), "printf 'agent = unix:///nonexistent/a.sock\\nstrict = yes\\n'"
		 " > %s/strict.conf && env -i LC_ALL=C PATH=/usr/bin:/bin MIGRATECTL_HOOK_CONF="
		 "%s/strict.conf %s lvtest prepare begin - </dev/null 2>%s/err", root, root, path,
		 root);
	r.status = system(cmd);
	cr_assert(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 1, "%d", r.status);
	snprintf(path, sizeof(path), "%s/err", root);
	slurp(path, buf, sizeof(buf));
	cr_assert(strstr(buf, "refused, as strict = yes asks"), "%s", buf);
	/* a wrapper whose binary is gone lets libvirt go on */
	snprintf(cmd, sizeof(cmd), "env -i MIGRATECTL=/nonexistent/migratectl "
		 "%s/etc/libvirt/hooks/qemu.d/50-migratectl lvtest prepare begin - </dev/null "
		 "2>/dev/null", root);
	cr_assert_eq(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	cr_assert_eq(system(cmd), 0);
}

/* The agent's side of MIG_OP_HOOK: the body is the call and the XML, the
 * XML's length as the call says, at most 1 MiB, a known operation. */
Test(hook_proc, the_agent_refuses_bad_calls)
{
	struct mig_hook_call c = { .op = MIG_HOOK_PREPARE, .subop = MIG_HOOK_SUB_BEGIN };
	struct mig_error err = { 0 };
	struct agent_request req;
	struct mig_client cl;
	struct mig_buf extra = { 0 };
	struct site s;
	char ep[160];
	uint8_t *body = calloc(1, sizeof(c) + MIG_HOOK_XML_MAX + 1);
	int r;
	struct { struct mig_request r; struct mig_hook_call c; } frame = {
		.r = { .op = MIG_OP_HOOK }, .c = c };

	/* the dispatcher: a call and any number of bytes; less is refused */
	cr_assert_eq(agent_request_parse(MIG_FRAME_REQUEST, &frame, sizeof(frame), &req, &err), 0,
		     "%s", err.msg);
	cr_assert_eq(req.body_len, sizeof(c));
	cr_assert_eq(agent_request_parse(MIG_FRAME_REQUEST, &frame, sizeof(frame) - 1, &req, &err),
		     -EINVAL);
	site_start(&s, "");
	snprintf(ep, sizeof(ep), "unix://%s", s.sock);
	mig_error_clear(&err);
	cr_assert_eq(mig_client_open(ep, NULL, &cl, &err), 0, "%s", err.msg);
	strcpy(c.domain, "lvtest");
	c.xml_len = 10;
	memcpy(body, &c, sizeof(c));
	cr_assert_eq(mig_client_call(&cl, MIG_OP_HOOK, body, sizeof(c) + 9, &extra, &err), -EINVAL);
	cr_assert(strstr(err.msg, "xml_len"), "%s", err.msg);
	mig_error_clear(&err);
	c.xml_len = MIG_HOOK_XML_MAX + 1;
	memcpy(body, &c, sizeof(c));
	r = mig_client_call(&cl, MIG_OP_HOOK, body, sizeof(c) + c.xml_len, &extra, &err);
	cr_assert_lt(r, 0, "a call over the cap never reaches the agent's handler");
	/* the cap is what one REQUEST frame holds, to the byte */
	cr_assert_eq(MIG_HOOK_XML_MAX + sizeof(struct mig_request) + sizeof(c),
		     mig_frame_max_payload(MIG_FRAME_REQUEST));
	mig_error_clear(&err);
	c.xml_len = MIG_HOOK_XML_MAX;
	memset(body + sizeof(c), ' ', MIG_HOOK_XML_MAX);
	memcpy(body, &c, sizeof(c));
	r = mig_client_call(&cl, MIG_OP_HOOK, body, sizeof(c) + c.xml_len, &extra, &err);
	cr_assert_eq(r, -EINVAL, "%d %s", r, err.msg);
	cr_assert(strstr(err.msg, "does not parse"), "the largest call arrives: %s", err.msg);
	mig_error_clear(&err);
	c.op = _MIG_HOOK_OP_END;
	c.xml_len = 0;
	memcpy(body, &c, sizeof(c));
	cr_assert_eq(mig_client_call(&cl, MIG_OP_HOOK, body, sizeof(c), &extra, &err), -EINVAL);
	cr_assert(strstr(err.msg, "unknown hook operation"), "%s", err.msg);
	/* and a good one still gets its verdict on the same connection */
	mig_error_clear(&err);
	c.op = MIG_HOOK_PREPARE;
	c.xml_len = (uint32_t)strlen(small_xml);
	memcpy(body, &c, sizeof(c));
	memcpy(body + sizeof(c), small_xml, c.xml_len);
	cr_assert_eq(mig_client_call(&cl, MIG_OP_HOOK, body, sizeof(c) + c.xml_len, &extra, &err),
		     0, "%s", err.msg);
	cr_assert_eq(extra.len, sizeof(struct mig_hook_verdict));
	cr_assert_eq(((struct mig_hook_verdict *)extra.data)->journaled, 1);
	cr_assert_eq(((struct mig_hook_verdict *)extra.data)->seq, 1);
	mig_buf_free(&extra);
	mig_client_close(&cl);
	free(body);
	site_stop(&s);
}
