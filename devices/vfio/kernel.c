// SPDX-License-Identifier: MIT
/*
 * The VFIO class's `kernel` backend: a real VFIO device fd, reached through
 * its IOMMU group and a type1 container (the legacy group API, which every
 * kernel with VFIO has), and the kernel's own answers passed through.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vfio-uapi.h"
#include "kernel.h"
#include "util.h"

static struct vfio_kernel *kern_of(struct vfio_dev *v)
{
	return v->be_data;
}

static int k_feature(struct vfio_dev *v, struct vfio_device_feature *f)
{
	return ioctl(kern_of(v)->device, VFIO_DEVICE_FEATURE, f) < 0 ? -errno : 0;
}

static ssize_t k_read(struct vfio_dev *v, int fd, void *buf, size_t n)
{
	ssize_t r;

	(void)v;
	r = read(fd, buf, n);
	return r < 0 ? -errno : r;
}

static ssize_t k_write(struct vfio_dev *v, int fd, const void *buf, size_t n)
{
	ssize_t r;

	(void)v;
	r = write(fd, buf, n);
	return r < 0 ? -errno : r;
}

static int k_precopy_info(struct vfio_dev *v, int fd, struct vfio_precopy_info *info)
{
	(void)v;
	info->argsz = sizeof(*info);
	return ioctl(fd, VFIO_MIG_GET_PRECOPY_INFO, info) < 0 ? -errno : 0;
}

static void k_close(struct vfio_dev *v, int fd)
{
	(void)v;
	close(fd);
}

static int k_reset(struct vfio_dev *v)
{
	return ioctl(kern_of(v)->device, VFIO_DEVICE_RESET) < 0 ? -errno : 0;
}

const struct vfio_backend vfio_kernel_backend = {
	.name = "kernel", .feature = k_feature, .data_read = k_read, .data_write = k_write,
	.precopy_info = k_precopy_info, .data_close = k_close, .reset = k_reset,
};

/* The last part of a sysfs link ("../../iommu_groups/7" -> "7"). */
static int link_name(const char *dir, const char *link, char *out, size_t n)
{
	char path[PATH_MAX], target[PATH_MAX];
	ssize_t len;
	const char *base;

	snprintf(path, sizeof(path), "%s/%s", dir, link);
	len = readlink(path, target, sizeof(target) - 1);
	if (len < 0)
		return -errno;
	target[len] = '\0';
	base = strrchr(target, '/');
	base = base ? base + 1 : target;
	if (strlen(base) >= n)
		return -ENAMETOOLONG;
	memcpy(out, base, strlen(base) + 1);
	return 0;
}

int vfio_kernel_open(struct vfio_kernel *k, const char *sysfs, struct mig_error *err)
{
	struct vfio_group_status gs = { .argsz = sizeof(gs) };
	char group[32], name[64], path[64];
	int r;

	memset(k, 0, sizeof(*k));
	k->container = k->group = k->device = -1;
	r = link_name(sysfs, "iommu_group", group, sizeof(group));
	if (r < 0)
		return mig_error_set(err, r, "%s: no IOMMU group (%s): is it bound to a VFIO "
				     "driver?", sysfs, strerror(-r));
	snprintf(name, sizeof(name), "%s", strrchr(sysfs, '/') ? strrchr(sysfs, '/') + 1 : sysfs);
	snprintf(k->name, sizeof(k->name), "%s", name);
	k->container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	if (k->container < 0)
		return mig_error_set(err, -errno, "/dev/vfio/vfio: %s (is the vfio module loaded?)",
				     strerror(errno));
	if (ioctl(k->container, VFIO_GET_API_VERSION) != VFIO_API_VERSION)
		r = mig_error_set(err, -ENOTSUP, "VFIO API version %d, this build speaks %d",
				  ioctl(k->container, VFIO_GET_API_VERSION), VFIO_API_VERSION);
	snprintf(path, sizeof(path), "/dev/vfio/%s", group);
	if (r >= 0) {
		k->group = open(path, O_RDWR | O_CLOEXEC);
		if (k->group < 0)
			r = mig_error_set(err, -errno, "%s: %s", path, strerror(errno));
	}
	if (r >= 0 && ioctl(k->group, VFIO_GROUP_GET_STATUS, &gs) < 0)
		r = mig_error_set(err, -errno, "%s: VFIO_GROUP_GET_STATUS: %s", path, strerror(errno));
	if (r >= 0 && !(gs.flags & VFIO_GROUP_FLAGS_VIABLE))
		r = mig_error_set(err, -EBUSY, "%s: not viable (a device of the group is bound to "
				  "another driver)", path);
	if (r >= 0 && ioctl(k->group, VFIO_GROUP_SET_CONTAINER, &k->container) < 0)
		r = mig_error_set(err, -errno, "%s: VFIO_GROUP_SET_CONTAINER: %s", path,
				  strerror(errno));
	if (r >= 0 && ioctl(k->container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) < 0)
		r = mig_error_set(err, -errno, "VFIO_SET_IOMMU type1v2: %s", strerror(errno));
	if (r >= 0) {
		k->device = ioctl(k->group, VFIO_GROUP_GET_DEVICE_FD, name);
		if (k->device < 0)
			r = mig_error_set(err, -errno, "%s: VFIO_GROUP_GET_DEVICE_FD: %s", name,
					  strerror(errno));
	}
	if (r >= 0)
		link_name(sysfs, "mdev_type", k->mdev_type, sizeof(k->mdev_type));
	if (r < 0)
		vfio_kernel_close(k);
	return r;
}

/* A config-space word, or 0. */
static uint32_t config_read(struct vfio_kernel *k, uint64_t config_off, unsigned at,
			    unsigned n)
{
	uint32_t v = 0;

	if (pread(k->device, &v, n, (off_t)(config_off + at)) != (ssize_t)n)
		return 0;
	return v;
}

int vfio_kernel_describe(struct vfio_kernel *k, struct vfio_desc *d, struct mig_error *err)
{
	struct vfio_device_info info = { .argsz = sizeof(info) };
	struct vfio_region_info cfg = { .argsz = sizeof(cfg),
					.index = VFIO_PCI_CONFIG_REGION_INDEX };
	bool have_cfg;

	if (ioctl(k->device, VFIO_DEVICE_GET_INFO, &info) < 0)
		return mig_error_set(err, -errno, "%s: VFIO_DEVICE_GET_INFO: %s", k->name,
				     strerror(errno));
	snprintf(d->mdev_type, sizeof(d->mdev_type), "%s", k->mdev_type);
	d->nr_regions = info.num_regions < VFIO_DESC_REGIONS ? info.num_regions : VFIO_DESC_REGIONS;
	have_cfg = info.num_regions > VFIO_PCI_CONFIG_REGION_INDEX &&
		   ioctl(k->device, VFIO_DEVICE_GET_REGION_INFO, &cfg) == 0 && cfg.size >= 64;
	if (have_cfg) {
		d->vendor = (uint16_t)config_read(k, cfg.offset, 0x00, 2);
		d->device = (uint16_t)config_read(k, cfg.offset, 0x02, 2);
		d->subvendor = (uint16_t)config_read(k, cfg.offset, 0x2c, 2);
		d->subdevice = (uint16_t)config_read(k, cfg.offset, 0x2e, 2);
	}
	for (uint32_t i = 0; i < d->nr_regions; i++) {
		struct vfio_region_info ri = { .argsz = sizeof(ri), .index = i };

		if (ioctl(k->device, VFIO_DEVICE_GET_REGION_INFO, &ri) < 0)
			continue;    /* a region the device does not have */
		d->regions[i].size = ri.size;
		d->regions[i].flags = ri.flags;
		/* a memory BAR's prefetchable bit (config space); a VMM maps a
		 * prefetchable BAR it may mmap write-combining */
		if (have_cfg && i <= VFIO_PCI_BAR5_REGION_INDEX) {
			uint32_t bar = config_read(k, cfg.offset, 0x10 + 4 * i, 4);

			if (!(bar & 1) && (bar & 8)) {
				d->regions[i].attrs |= VFIO_REGION_PREFETCH;
				if (ri.flags & VFIO_REGION_INFO_FLAG_MMAP)
					d->regions[i].attrs |= VFIO_REGION_WC;
			}
		}
	}
	return 0;
}

int vfio_kernel_map_ram(struct vfio_kernel *k, void *vaddr, uint64_t iova, uint64_t size,
			struct mig_error *err)
{
	struct vfio_iommu_type1_dma_map m = {
		.argsz = sizeof(m), .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.vaddr = (uintptr_t)vaddr, .iova = iova, .size = size,
	};

	if (ioctl(k->container, VFIO_IOMMU_MAP_DMA, &m) < 0)
		return mig_error_set(err, -errno, "%s: mapping %llu MiB of guest RAM for DMA: %s",
				     k->name, (unsigned long long)(size >> 20), strerror(errno));
	return 0;
}

void vfio_kernel_close(struct vfio_kernel *k)
{
	if (k->device >= 0)
		close(k->device);
	if (k->group >= 0)
		close(k->group);
	if (k->container >= 0)
		close(k->container);
	k->container = k->group = k->device = -1;
}
