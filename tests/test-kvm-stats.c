// SPDX-License-Identifier: MIT
/*
 * KVM's binary statistics reader (devices/kvm-stats.c): against this
 * host's real statistics files of a VM and a vCPU, with a running lab VM
 * whose paced guest exits to the VMM, and against crafted files (a memfd
 * in the kernel's layout) that a reader must refuse or read right.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/kvm.h>

#include <migrate/lab.h>

#include "kvm-stats.h"
#include "lab/lab-internal.h"
#include "util.h"

const int test_requires_kvm = 1;

Test(kvm_stats, a_vm_and_a_vcpu_of_this_host)
{
	struct kvm_stats vm, cpu;
	struct mig_error err = { 0 };
	char want[64];
	uint64_t *sample;
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), vmfd, vcpufd;

	cr_assert_geq(kvm, 0);
	vmfd = ioctl(kvm, KVM_CREATE_VM, 0);
	cr_assert_geq(vmfd, 0);
	vcpufd = ioctl(vmfd, KVM_CREATE_VCPU, 0);
	cr_assert_geq(vcpufd, 0);
	cr_assert_eq(kvm_stats_open(vmfd, &vm, &err), 0, "%s", err.msg);
	cr_assert_eq(kvm_stats_open(vcpufd, &cpu, &err), 0, "%s", err.msg);
	snprintf(want, sizeof(want), "kvm-%d", (int)getpid());
	cr_assert_str_eq(vm.id, want);
	snprintf(want, sizeof(want), "kvm-%d/vcpu-0", (int)getpid());
	cr_assert_str_eq(cpu.id, want);
	cr_assert_gt(vm.nr, 0);
	cr_assert_gt(cpu.nr, vm.nr, "a vCPU has more statistics than its VM here");
	cr_assert_geq(kvm_stats_find(&cpu, "exits"), 0);
	cr_assert_geq(kvm_stats_find(&cpu, "halt_exits"), 0);
	cr_assert_geq(kvm_stats_find(&vm, "remote_tlb_flush"), 0);
	cr_assert_eq(kvm_stats_find(&cpu, "no_such_statistic"), -1);
	/* the halt statistics the migration reports, with their units as
	 * KERNEL-UAPI.md §7 measured them here */
	{
		static const char *const counts[] = { "halt_successful_poll", "halt_attempted_poll" };
		static const char *const times[] = { "halt_poll_success_ns", "halt_poll_fail_ns",
						     "halt_wait_ns" };
		int i;

		for (unsigned k = 0; k < ARRAY_SIZE(counts); k++) {
			i = kvm_stats_find(&cpu, counts[k]);
			cr_assert_geq(i, 0, "%s", counts[k]);
			cr_assert_eq(cpu.stats[i].flags, KVM_STATS_TYPE_CUMULATIVE | KVM_STATS_UNIT_NONE,
				     "%s: %#x", counts[k], cpu.stats[i].flags);
		}
		for (unsigned k = 0; k < ARRAY_SIZE(times); k++) {
			i = kvm_stats_find(&cpu, times[k]);
			cr_assert_geq(i, 0, "%s", times[k]);
			cr_assert_eq(cpu.stats[i].flags, KVM_STATS_TYPE_CUMULATIVE |
				     KVM_STATS_UNIT_SECONDS | KVM_STATS_BASE_POW10, "%s: %#x", times[k],
				     cpu.stats[i].flags);
			cr_assert_eq(cpu.stats[i].exponent, -9, "%s in ns", times[k]);
			cr_assert_eq(cpu.stats[i].size, 1);
		}
		i = kvm_stats_find(&cpu, "halt_wait_hist");
		cr_assert_geq(i, 0);
		cr_assert_eq(cpu.stats[i].flags & KVM_STATS_TYPE_MASK, KVM_STATS_TYPE_LOG_HIST);
		cr_assert_eq(cpu.stats[i].size, 32, "32 buckets: %u", cpu.stats[i].size);
	}
	/* a vCPU that never ran exited no time */
	sample = calloc(1, cpu.data_bytes);
	cr_assert_eq(kvm_stats_sample(&cpu, sample, &err), 0, "%s", err.msg);
	cr_assert_eq(kvm_stats_value(&cpu, sample, kvm_stats_find(&cpu, "exits")), 0);
	free(sample);
	kvm_stats_close(&vm);
	kvm_stats_close(&cpu);
	close(vcpufd);
	close(vmfd);
	close(kvm);
}

/* A paced guest rings its sleep doorbell (port I/O; PVM emulates it and
 * counts no io_exits): the vCPU's exits rise between samples, and never
 * fall; it sleeps halted in KVM, which counts the time. */
Test(kvm_stats, a_running_guest_exits, .timeout = 120)
{
	struct lab_config cfg;
	struct lab_vm *vm;
	struct kvm_stats s;
	struct mig_error err = { 0 };
	uint64_t *a, *b;
	int exits, pf;

	lab_config_default(&cfg);
	cr_assert_eq(lab_spec_parse("mem=64M,vcpus=1,wss=4M,rate=2000", &cfg, &err), 0);
	cr_assert_eq(lab_vm_create(&cfg, &vm, &err), 0, "%s", err.msg);
	cr_assert_eq(lab_vm_start(vm, &err), 0, "%s", err.msg);
	cr_assert_eq(kvm_stats_open(vm->vcpus[0]->fd, &s, &err), 0, "%s", err.msg);
	exits = kvm_stats_find(&s, "exits");
	pf = kvm_stats_find(&s, "pf_taken");
	cr_assert(exits >= 0 && pf >= 0);
	a = calloc(1, s.data_bytes);
	b = calloc(1, s.data_bytes);
	cr_assert_eq(kvm_stats_sample(&s, a, &err), 0, "%s", err.msg);
	for (int i = 0; i < 300; i++) {
		usleep(10000);
		cr_assert_eq(kvm_stats_sample(&s, b, &err), 0, "%s", err.msg);
		cr_assert_geq(kvm_stats_value(&s, b, exits), kvm_stats_value(&s, a, exits));
		if (kvm_stats_value(&s, b, exits) > kvm_stats_value(&s, a, exits) + 10)
			break;
	}
	cr_assert_gt(kvm_stats_value(&s, b, exits), kvm_stats_value(&s, a, exits) + 10,
		     "exits %llu then %llu", (unsigned long long)kvm_stats_value(&s, a, exits),
		     (unsigned long long)kvm_stats_value(&s, b, exits));
	/* its RAM was faulted in under dirty logging */
	cr_assert_gt(kvm_stats_value(&s, b, pf), 0);
	/* what the engine samples: the lab's sums, halt times counted */
	{
		struct mig_vm_kvm k = { 0 };

		vm->base.ops->kvm(&vm->base, &k);
		cr_assert(k.valid);
		cr_assert(k.halt_ns_valid, "this kernel counts halt_wait_ns and the poll times");
		cr_assert_eq(k.vcpus, 1);
		cr_assert_geq(k.exits, kvm_stats_value(&s, b, exits));
		cr_assert_geq(k.page_faults, kvm_stats_value(&s, b, pf));
		cr_assert_geq(k.halt_attempted_polls, k.halt_successful_polls);
		/* once its fill is done, the paced guest sleeps halted in KVM
		 * (vcpu_halt()), which counts it */
		for (int i = 0; i < 3000 && !k.halt_wait_ns; i++) {
			usleep(10000);
			vm->base.ops->kvm(&vm->base, &k);
		}
		cr_assert_gt(k.halt_wait_ns, 0, "no time halted in KVM in 30 s");
	}
	free(a);
	free(b);
	kvm_stats_close(&s);
	lab_vm_destroy(vm);
}

/* ---- crafted files ---- */

#define NAME 16
struct desc {
	uint32_t flags;
	int16_t exponent;
	uint16_t size;
	uint32_t offset;
	uint32_t bucket_size;
	char name[NAME];
};

/* header, id at 24, two descriptors at 64 (out of offset order), data at 256 */
static int crafted(struct kvm_stats_header h, const struct desc *d, unsigned nd,
		   const uint64_t *data, unsigned nwords)
{
	int fd = memfd_create("stats", MFD_CLOEXEC);

	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
	cr_assert_eq(pwrite(fd, "kvm-1/vcpu-0", 13, 24), 13);
	cr_assert_eq(pwrite(fd, d, nd * sizeof(*d), 64), (ssize_t)(nd * sizeof(*d)));
	cr_assert_eq(pwrite(fd, data, nwords * 8, 256), (ssize_t)(nwords * 8));
	return fd;
}

static const struct kvm_stats_header good_h = {
	.name_size = NAME, .num_desc = 2, .id_offset = 24, .desc_offset = 64, .data_offset = 256,
};
static const struct desc good_d[2] = {
	{ .flags = KVM_STATS_TYPE_LOG_HIST, .size = 3, .offset = 8, .name = "wait_hist" },
	{ .flags = KVM_STATS_TYPE_CUMULATIVE, .size = 1, .offset = 0, .name = "exits" },
};
static const uint64_t good_data[4] = { 42, 7, 8, 9 };

Test(kvm_stats, a_crafted_file_is_read_by_each_descriptors_offset)
{
	struct kvm_stats s;
	struct mig_error err = { 0 };
	uint64_t sample[4] = { 0 };
	int fd = crafted(good_h, good_d, 2, good_data, 4);

	cr_assert_eq(kvm_stats_open_fd(fd, &s, &err), 0, "%s", err.msg);
	cr_assert_str_eq(s.id, "kvm-1/vcpu-0");
	cr_assert_eq(s.data_bytes, 32, "the block spans the histogram: %u", s.data_bytes);
	cr_assert_eq(kvm_stats_sample(&s, sample, &err), 0, "%s", err.msg);
	cr_assert_eq(kvm_stats_value(&s, sample, kvm_stats_find(&s, "exits")), 42);
	cr_assert_eq(kvm_stats_value(&s, sample, kvm_stats_find(&s, "wait_hist")), 7);
	cr_assert_eq(s.stats[0].size, 3);
	kvm_stats_close(&s);
}

static void expect_refused(struct kvm_stats_header h, const struct desc *d, unsigned nd,
			   const char *needle)
{
	struct kvm_stats s;
	struct mig_error err = { 0 };
	int fd = crafted(h, d, nd, good_data, 4);
	int r = kvm_stats_open_fd(fd, &s, &err);

	cr_assert_lt(r, 0, "accepted: %s", needle);
	cr_assert(strstr(err.msg, needle), "%s", err.msg);
	kvm_stats_close(&s);
}

Test(kvm_stats, a_malformed_file_is_refused_with_what_is_wrong)
{
	struct kvm_stats_header h = good_h;
	struct desc d[2];

	h.flags = 1;
	expect_refused(h, good_d, 2, "flags 0x1");
	h = good_h;
	h.num_desc = 1000000;
	expect_refused(h, good_d, 2, "1000000 descriptors");
	h = good_h;
	h.desc_offset = 60;     /* not 8-byte aligned */
	expect_refused(h, good_d, 2, "offsets");
	h = good_h;
	h.num_desc = 12;        /* descriptors past the end of the file */
	expect_refused(h, good_d, 2, "12 descriptors");
	memcpy(d, good_d, sizeof(d));
	d[1].size = 0;
	expect_refused(good_h, d, 2, "descriptor 1 is malformed");
	memcpy(d, good_d, sizeof(d));
	memset(d[0].name, 'x', NAME);   /* no NUL in its name */
	expect_refused(good_h, d, 2, "descriptor 0 is malformed");
}

Test(kvm_stats, a_file_that_is_no_kvm_fd_says_so)
{
	struct kvm_stats s;
	struct mig_error err = { 0 };
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	cr_assert_eq(kvm_stats_open(fd, &s, &err), -ENOTSUP);
	cr_assert(strstr(err.msg, "no KVM binary statistics"), "%s", err.msg);
	close(fd);
}
