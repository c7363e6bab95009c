/* SPDX-License-Identifier: MIT */
/*
 * KVM's binary statistics (KERNEL-UAPI.md §7): KVM_GET_STATS_FD on a VM or
 * vCPU fd gives a read-only file whose header, id and descriptors never
 * change for its life.  They are read and checked once; then a sample is
 * one pread of the whole data block, and a statistic is looked up by name
 * once and read from samples by its index.
 */
#ifndef DEVICES_KVM_STATS_H
#define DEVICES_KVM_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <migrate/error.h>

#define KVM_STATS_NAME_MAX 64

struct kvm_stat {
	char name[KVM_STATS_NAME_MAX];
	uint32_t flags;           /* KVM_STATS_TYPE_*, _UNIT_*, _BASE_* */
	int16_t exponent;
	uint16_t size;            /* u64 values: 1, or a histogram's buckets */
	uint32_t offset;          /* in the data block, bytes */
};

struct kvm_stats {
	int fd;
	char id[64];              /* "kvm-<pid>" or "kvm-<pid>/vcpu-<n>" */
	struct kvm_stat *stats;
	uint32_t nr;
	uint32_t data_offset;
	uint32_t data_bytes;      /* the data block: what one sample reads */
};

/* KVM_GET_STATS_FD on `fd` (a VM's or a vCPU's), then kvm_stats_open_fd().
 * -ENOTSUP with a message where the kernel has no binary statistics. */
int kvm_stats_open(int fd, struct kvm_stats *s, struct mig_error *err);
/* A statistics file already open (taken over: closed by kvm_stats_close());
 * everything in its header and descriptors is checked against its size. */
int kvm_stats_open_fd(int stats_fd, struct kvm_stats *s, struct mig_error *err);
void kvm_stats_close(struct kvm_stats *s);
/* The statistic's index, or -1. */
int kvm_stats_find(const struct kvm_stats *s, const char *name);
/* One pread of the data block into buf (s->data_bytes bytes). */
int kvm_stats_sample(const struct kvm_stats *s, uint64_t *buf, struct mig_error *err);
/* Statistic i's first value in a sample (a histogram's: its first bucket);
 * 0 for i < 0. */
uint64_t kvm_stats_value(const struct kvm_stats *s, const uint64_t *sample, int i);

#endif
