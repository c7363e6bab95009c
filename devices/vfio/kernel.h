/* SPDX-License-Identifier: MIT */
/*
 * The VFIO class's `kernel` backend (kernel.c): a real device fd from the
 * kernel's VFIO, through its IOMMU group and a type1 container.
 */
#ifndef DEVICES_VFIO_KERNEL_H
#define DEVICES_VFIO_KERNEL_H

#include "vfio.h"

struct vfio_kernel {
	int container, group, device;
	char name[64];            /* the mdev's UUID or the PCI address */
	char mdev_type[32];       /* "mtty-2"; "" for a PCI function */
};

extern const struct vfio_backend vfio_kernel_backend;

/* Open the device at `sysfs` (/sys/bus/mdev/devices/UUID, or a PCI
 * function's directory) bound to a VFIO driver.  The error says what to
 * check. */
int vfio_kernel_open(struct vfio_kernel *k, const char *sysfs, struct mig_error *err);
/* What a destination's device must match: PCI IDs (config space), mdev
 * type, each region's size and flags, and each memory BAR's prefetchable
 * bit (write-combining: a prefetchable BAR the device lets a VMM mmap). */
int vfio_kernel_describe(struct vfio_kernel *k, struct vfio_desc *d, struct mig_error *err);
/* Map guest RAM for the device's DMA: `size` bytes at `vaddr` in this
 * process, at IOVA `iova` (a guest physical address).  Closing the
 * container unmaps it. */
int vfio_kernel_map_ram(struct vfio_kernel *k, void *vaddr, uint64_t iova, uint64_t size,
			struct mig_error *err);
void vfio_kernel_close(struct vfio_kernel *k);

#endif
