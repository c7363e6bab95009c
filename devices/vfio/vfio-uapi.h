/* SPDX-License-Identifier: MIT */
/*
 * The VFIO migration uAPI this build needs beyond the host's <linux/vfio.h>
 * (KERNEL-UAPI.md §0): Debian 12's 6.1 headers lack PRE_COPY, the pre-copy
 * sizing ioctl and MIG_DATA_SIZE, which kernels from 6.2 on have.  Values
 * are the kernel's ABI; each is defined only where the header lacks it.
 */
#ifndef VFIO_UAPI_H
#define VFIO_UAPI_H

#include <linux/types.h>
#include <linux/vfio.h>
#include <sys/ioctl.h>

#ifndef VFIO_MIGRATION_PRE_COPY
#define VFIO_MIGRATION_PRE_COPY (1 << 2)
#endif

/* On the data fd, in PRE_COPY and PRE_COPY_P2P only (EINVAL elsewhere). */
#ifndef VFIO_MIG_GET_PRECOPY_INFO
struct vfio_precopy_info {
	__u32 argsz;
	__u32 flags;
	__aligned_u64 initial_bytes;
	__aligned_u64 dirty_bytes;
};
#define VFIO_MIG_GET_PRECOPY_INFO _IO(VFIO_TYPE, VFIO_BASE + 21)
#endif

#ifndef VFIO_DEVICE_FEATURE_MIG_DATA_SIZE
struct vfio_device_feature_mig_data_size {
	__aligned_u64 stop_copy_length;
};
#define VFIO_DEVICE_FEATURE_MIG_DATA_SIZE 9
#endif

_Static_assert(VFIO_MIG_GET_PRECOPY_INFO == 0x3b79, "VFIO_MIG_GET_PRECOPY_INFO");
_Static_assert(VFIO_DEVICE_FEATURE == 0x3b75, "VFIO_DEVICE_FEATURE");
_Static_assert(sizeof(struct vfio_device_feature_mig_state) == 8, "mig_state");
_Static_assert(sizeof(struct vfio_precopy_info) == 24, "precopy_info");

#endif
