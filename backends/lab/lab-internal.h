/* SPDX-License-Identifier: MIT */
#ifndef DEVICES_LAB_INTERNAL_H
#define DEVICES_LAB_INTERNAL_H

#include <stdatomic.h>

#include "devices-internal.h"
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

/* The lab backend: a struct mig_vm whose devices are guest RAM, the x86
 * platform and the vCPUs, hosted in this process. */
struct lab_vm {
	struct mig_vm base;
	struct lab_config cfg;
	struct kvm_vm_fds fds;
	struct vcpu_host vhost;
	uint64_t tsc_khz;
	struct mem_dev *mem;
	struct platform_dev *platform;
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
	/* base.devices: memory, the platform, the vCPUs in order, then the
	 * VFIO devices */
	struct mig_device *devs[2 + LAB_MAX_VCPUS + LAB_VFIO_MAX + LAB_CCW_MAX + 1];
	_Atomic uint64_t error_reports;
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


#endif
