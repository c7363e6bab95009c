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

/* The numbers as the kernel makes them (the _IO encoding is the
 * architecture's: 0x3b79 and 0x3b75 on x86 and arm64, not on ppc or mips). */
_Static_assert(_IOC_TYPE(VFIO_MIG_GET_PRECOPY_INFO) == VFIO_TYPE &&
	       _IOC_NR(VFIO_MIG_GET_PRECOPY_INFO) == VFIO_BASE + 21 &&
	       _IOC_DIR(VFIO_MIG_GET_PRECOPY_INFO) == _IOC_NONE, "VFIO_MIG_GET_PRECOPY_INFO");
_Static_assert(_IOC_TYPE(VFIO_DEVICE_FEATURE) == VFIO_TYPE &&
	       _IOC_NR(VFIO_DEVICE_FEATURE) == VFIO_BASE + 17 &&
	       _IOC_DIR(VFIO_DEVICE_FEATURE) == _IOC_NONE, "VFIO_DEVICE_FEATURE");
_Static_assert(sizeof(struct vfio_device_feature_mig_state) == 8, "mig_state");
_Static_assert(sizeof(struct vfio_precopy_info) == 24, "precopy_info");

#endif
