/* SPDX-License-Identifier: MIT */
#ifndef DEVICES_LAB_INTERNAL_H
#define DEVICES_LAB_INTERNAL_H

#include <stdatomic.h>

#include "devices/devices-internal.h"
#include "migrate/lab.h"

struct lab_vm {
	struct lab_config cfg;
	int kvm_fd;
	int vm_fd;
	uint64_t tsc_khz;
	struct mem_dev *mem;
	struct vcpu_dev *vcpus[LAB_MAX_VCPUS];
	uint32_t nr_vcpus;
	_Atomic uint64_t error_reports;
	struct mig_buf loaded_vm;   /* VM-wide blob kept for the clock at resume */
	/* The dirty log's check against the guest's own count (lab_vm_dirty_sync) */
	uint64_t *sync_new;         /* what one sync reported */
	bool sync_marked;           /* stamped[] holds the counts after the last sync */
	uint64_t stamped[LAB_MAX_VCPUS];
};

/* What this host can give a new guest's RAM, in bytes (UINT64_MAX when
 * nothing says): MemAvailable, and the room under the memory.max of this
 * process's cgroup v2 and each ancestor.  ret_what names the smallest
 * ("MemAvailable", "memory.max of cgroup /x, ...").  root prefixes every
 * path read (NULL for the real /proc and cgroup mount), for tests. */
uint64_t lab_host_mem_available(const char *root, char *ret_what, size_t n);

/* Port I/O doorbells of the guest payload (lab-abi.h), from the vCPU thread. */
int lab_vm_handle_io(struct lab_vm *vm, struct vcpu_dev *v, uint16_t port, uint8_t val);
void vcpu_wait(struct vcpu_dev *v, uint64_t ns);
/* Record why a vCPU stopped (the first reason wins); it parks after the exit. */
void vcpu_set_fatal(struct vcpu_dev *v, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
