/* SPDX-License-Identifier: MIT */
#ifndef DEVICES_LAB_INTERNAL_H
#define DEVICES_LAB_INTERNAL_H

#include <stdatomic.h>

#include "devices-internal.h"
#include "kvm-stats.h"
#include "lab-table.h"
#include <migrate/lab.h>
#if HAVE_VFIO
#include "vfio/sim.h"
#include "vfio/kernel.h"
#endif
#if HAVE_CCW
#include "ccw/ccw.h"
#endif

/* A sim VFIO device of the lab VM. */
struct lab_vfio {
#if HAVE_VFIO
	struct vfio_sim sim;      /* a v2 device */
	struct vfio_sim_v1 v1;    /* or a v1 one, the same device behind its region */
	struct vfio_sim *model;   /* whichever it is */
	bool is_v1;
	struct vfio_dev dev;
#endif
};

/* What one architecture keeps of a lab VM (lab-x86.c, arm64/lab-arm64.c). */
struct lab_arch;
/* The VM-wide devices it adds: x86 the platform; arm64 the GIC and the
 * MSI devices. */
#define LAB_ARCH_DEVS_MAX 2

/* The lab backend: a struct mig_vm whose devices are guest RAM, the
 * architecture's VM-wide devices, the vCPUs and the sim devices, hosted in
 * this process. */
/* The vCPU statistics lab_kvm() sums (lab-vm.c). */
#define LAB_KVM_VCPU_STATS 8

struct lab_vm {
	struct mig_vm base;
	struct lab_config cfg;
	struct kvm_vm_fds fds;
	struct vcpu_host vhost;
	struct lab_arch *arch;
	uint64_t table;             /* where in RAM the table is (lab-abi.h) */
	/* KVM's statistics of the VM and each vCPU (stats_ok false where the
	 * kernel has none: nothing else depends on them) */
	bool stats_ok;
	struct kvm_stats stats_vm, stats_vcpu[LAB_MAX_VCPUS];
	int stat_tlb, stat_vcpu[LAB_KVM_VCPU_STATS]; /* looked up once: the sums lab_kvm() reports */
	uint64_t *stats_buf;          /* one sample of the largest file */
	struct mem_dev *mem;
	struct vcpu_dev *vcpus[LAB_MAX_VCPUS];
	uint32_t nr_vcpus;
	struct lab_vfio *vfio[LAB_VFIO_MAX];
	uint32_t nr_vfio;
#if HAVE_CCW
	struct ccw_sim *ccw[LAB_CCW_MAX];
#endif
	uint32_t nr_ccw;
#if HAVE_VFIO
	struct lab_mdev {
		struct vfio_kernel k;
		struct vfio_dev dev;
	} *mdev;                    /* a real mediated device (cfg.mdev) */
#endif
	/* base.devices: memory, the architecture's, the vCPUs in order, then
	 * the sim devices and the mdev */
	struct mig_device *devs[1 + LAB_ARCH_DEVS_MAX + LAB_MAX_VCPUS + LAB_VFIO_MAX +
				LAB_CCW_MAX + 1];
	_Atomic uint64_t error_reports;
	/* The dirty log's check against the guest's own count (lab_vm_dirty_sync) */
	uint64_t *sync_new;         /* what one sync reported */
	bool sync_marked;           /* stamped[] holds the counts after the last sync */
	uint64_t stamped[LAB_MAX_VCPUS];
};

/* ---- what the lab VM asks of its architecture ----
 * One implementation per cpu_family (backends/lab/meson.build): lab-x86.c,
 * arm64/lab-arm64.c. */

/* Where guest RAM starts. */
uint64_t lab_arch_ram_base(void);
/* After guest RAM, before any vCPU: what must exist first (x86: the
 * in-kernel irqchip and the platform device).  Sets vm->arch, vm->table. */
int lab_arch_create(struct lab_vm *vm, struct mig_error *err);
/* Once every vCPU exists (arm64: the vGIC and its ITS): the VM-wide
 * devices, at most LAB_ARCH_DEVS_MAX, in the VM's device order. */
int lab_arch_vcpus_made(struct lab_vm *vm, struct mig_device **out, unsigned *ret_n,
			struct mig_error *err);
/* Takes what lab_arch_create() and lab_arch_vcpus_made() made, if they did. */
void lab_arch_destroy(struct lab_vm *vm);
/* A fresh boot: the system area, the payload and the table with each
 * vCPU's work, each vCPU's first registers, the VM-wide devices running. */
int lab_arch_boot(struct lab_vm *vm, const struct lab_work *work, struct mig_error *err);
/* Ticks a second of the counter the guest paces itself by. */
uint64_t lab_arch_ticks_hz(const struct lab_vm *vm);
/* Self-check errors the architecture's devices count. */
uint64_t lab_arch_errors(struct lab_vm *vm);
/* The exits of its vCPUs (its doorbells, the dirty ring's). */
extern const struct vcpu_exit_ops lab_arch_exits;

/* For them, from lab-vm.c: a doorbell of the payload (LAB_PORT_*), -ENOENT
 * for one it does not know; a full dirty ring; a vCPU area's word. */
int lab_doorbell(struct lab_vm *vm, struct vcpu_dev *v, unsigned door);
int lab_ring_full(void *arg, struct vcpu_dev *v);
/* A vCPU started or stopped running: to the VM's watcher (mig_vm_run_watch()). */
void lab_vcpu_ran(void *arg, struct vcpu_dev *v, const struct mig_vcpu_run *e);
uint64_t lab_va_read(struct lab_vm *vm, unsigned i, unsigned off);
void lab_va_write(struct lab_vm *vm, unsigned i, unsigned off, uint64_t v);

/* What this host can give a new guest's RAM, in bytes (UINT64_MAX when
 * nothing says): MemAvailable, and the room under the memory.max of this
 * process's cgroup v2 and each ancestor.  ret_what names the smallest
 * ("MemAvailable", "memory.max of cgroup /x, ...").  root prefixes every
 * path read (NULL for the real /proc and cgroup mount), for tests. */
uint64_t lab_host_mem_available(const char *root, char *ret_what, size_t n);


#endif
