// SPDX-License-Identifier: MIT
/*
 * The GIC class's kernel backend: KVM_{GET,SET}_DEVICE_ATTR on the vgic-v3
 * and ITS device fds, and VLPI forwarding through KVM_IRQFD (whose bypass
 * connects a passthrough device's MSI to the vGIC directly).
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <linux/kvm.h>

#include "gic/gic.h"
#include "gic/gic-uapi.h"
#include "util.h"

static int kattr(struct gic_dev *g, int its, bool set, uint32_t group, uint64_t attr, void *val)
{
	struct gic_kernel *k = g->be_data;
	struct kvm_device_attr a = {
		.group = group, .attr = attr, .addr = (uint64_t)(uintptr_t)val,
	};
	int fd = its < 0 ? k->v3_fd : (unsigned)its < k->nr_its ? k->its_fd[its] : -1;

	if (fd < 0)
		return -ENODEV;
	if (ioctl(fd, set ? KVM_SET_DEVICE_ATTR : KVM_GET_DEVICE_ATTR, &a) < 0)
		return -errno;
	return 0;
}

static int signal_msi(struct gic_kernel *k, const struct gic_vlpi *l)
{
	uint64_t db = k->its_base[l->its] + GITS_TRANSLATER;
	struct kvm_msi m = {
		.address_lo = (uint32_t)db, .address_hi = (uint32_t)(db >> 32), .data = l->event,
		.flags = KVM_MSI_VALID_DEVID, .devid = l->devid,
	};

	int r = ioctl(k->vm_fd, KVM_SIGNAL_MSI, &m);

	/* 1: made pending; 0: no translation (the guest unmapped it) */
	return r < 0 ? -errno : r;
}

/* The relay: each signal of a relayed eventfd becomes one MSI (signals
 * that came together are one edge, as they would be on the device). */
static void *relay_main(void *arg)
{
	struct gic_kernel *k = arg;

	for (;;) {
		struct pollfd pf[GIC_VLPIS_MAX + 1] = { { .fd = k->wake_fd, .events = POLLIN } };
		struct gic_vlpi *who[GIC_VLPIS_MAX];
		unsigned n = 0;
		uint64_t v;

		pthread_mutex_lock(&k->lock);
		if (k->relay_quit) {
			pthread_mutex_unlock(&k->lock);
			return NULL;
		}
		for (unsigned i = 0; i < k->nr_relayed; i++) {
			/* pf[0] is the wake fd: relayed LPI n polls in pf[n + 1] */
			who[n] = k->relayed[i];
			pf[n + 1] = (struct pollfd){ .fd = who[n]->fd, .events = POLLIN };
			n++;
		}
		pthread_mutex_unlock(&k->lock);
		if (poll(pf, n + 1, -1) < 0 && errno != EINTR)
			return NULL;
		if (pf[0].revents & POLLIN && read(k->wake_fd, &v, sizeof(v)) < 0)
			continue;
		for (unsigned i = 0; i < n; i++) {
			if (!(pf[i + 1].revents & POLLIN) || read(pf[i + 1].fd, &v, sizeof(v)) != 8)
				continue;
			if (signal_msi(k, who[i]) == 1)
				__atomic_fetch_add(&k->relayed_msis, 1, __ATOMIC_RELAXED);
		}
	}
}

static void relay_wake(struct gic_kernel *k)
{
	uint64_t one = 1;

	if (write(k->wake_fd, &one, sizeof(one)) < 0) {
		/* the counter is far from full: nothing to do */
	}
}

static int kforward(struct gic_dev *g, struct gic_vlpi *l, bool on)
{
	struct gic_kernel *k = g->be_data;
	struct kvm_irqfd f = { .fd = (uint32_t)l->fd, .gsi = (uint32_t)l->gsi };
	int r = 0;

	pthread_mutex_lock(&k->lock);
	if (on) {
		/* out of the relay first: one path for its signals at a time */
		for (unsigned i = 0; i < k->nr_relayed; i++)
			if (k->relayed[i] == l)
				k->relayed[i] = k->relayed[--k->nr_relayed];
		relay_wake(k);
		if (ioctl(k->vm_fd, KVM_IRQFD, &f) < 0)
			r = -errno;
	} else {
		f.flags = KVM_IRQFD_FLAG_DEASSIGN;
		if (ioctl(k->vm_fd, KVM_IRQFD, &f) < 0) {
			r = -errno;
		} else if (k->nr_relayed < GIC_VLPIS_MAX) {
			k->relayed[k->nr_relayed++] = l;
			if (!k->relay_started && pthread_create(&k->relay, NULL, relay_main, k) == 0)
				k->relay_started = true;
			/* a signal between the deassign and now waits in the
			 * eventfd's counter: the relay takes it at its next poll */
			relay_wake(k);
		} else {
			r = -ENOSPC;
		}
	}
	pthread_mutex_unlock(&k->lock);
	return r;
}

static int kinject(struct gic_dev *g, struct gic_vlpi *l)
{
	int r = signal_msi(g->be_data, l);

	return r < 0 ? r : 0;
}

const struct gic_backend gic_kernel_backend = {
	.name = "kernel", .attr = kattr, .forward = kforward, .inject = kinject,
};

static int create_dev(int vm_fd, uint32_t type, int *ret)
{
	struct kvm_create_device cd = { .type = type };

	if (ioctl(vm_fd, KVM_CREATE_DEVICE, &cd) < 0)
		return -errno;
	*ret = (int)cd.fd;
	return 0;
}

static int set(int fd, uint32_t group, uint64_t attr, void *val)
{
	struct kvm_device_attr a = { .group = group, .attr = attr, .addr = (uint64_t)(uintptr_t)val };

	return ioctl(fd, KVM_SET_DEVICE_ATTR, &a) < 0 ? -errno : 0;
}

int gic_kernel_create(struct gic_kernel *k, int vm_fd, uint32_t nr_irqs, uint64_t dist_base,
		      uint64_t redist_base, unsigned nr_its, const uint64_t *its_base,
		      struct mig_error *err)
{
	int r;

	memset(k, 0, sizeof(*k));
	k->vm_fd = vm_fd;
	k->v3_fd = -1;
	k->wake_fd = -1;
	for (unsigned i = 0; i < GIC_ITS_MAX; i++)
		k->its_fd[i] = -1;
	pthread_mutex_init(&k->lock, NULL);
	if (nr_its > GIC_ITS_MAX)
		return mig_error_set(err, -EINVAL, "gic: %u ITSes (at most %u)", nr_its, GIC_ITS_MAX);
	k->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (k->wake_fd < 0)
		return mig_error_set(err, -errno, "eventfd: %s", strerror(errno));
	r = create_dev(vm_fd, GIC_KVM_DEV_TYPE_VGIC_V3, &k->v3_fd);
	if (r == -ENODEV || r == -ENOTTY)
		return mig_error_set(err, r, "gic: this host's KVM cannot create a vgic-v3 (%s): "
				     "an arm64 host with a GICv3 is needed", strerror(-r));
	if (r < 0)
		return mig_error_set(err, r, "gic: KVM_CREATE_DEVICE vgic-v3: %s", strerror(-r));
	r = set(k->v3_fd, GIC_GRP_NR_IRQS, 0, &nr_irqs);
	if (r < 0)
		return mig_error_set(err, r, "gic: setting %u interrupts: %s", nr_irqs, strerror(-r));
	r = set(k->v3_fd, GIC_GRP_ADDR, GIC_ADDR_TYPE_DIST, &dist_base);
	if (r >= 0)
		r = set(k->v3_fd, GIC_GRP_ADDR, GIC_ADDR_TYPE_REDIST, &redist_base);
	if (r < 0)
		return mig_error_set(err, r, "gic: placing the distributor and redistributors: %s",
				     strerror(-r));
	/* after every vCPU exists: the redistributors are made for them now */
	r = set(k->v3_fd, GIC_GRP_CTRL, GIC_CTRL_INIT, NULL);
	if (r < 0)
		return mig_error_set(err, r, "gic: initialising the vgic-v3: %s", strerror(-r));
	for (unsigned i = 0; i < nr_its; i++) {
		uint64_t base = its_base[i];

		r = create_dev(vm_fd, GIC_KVM_DEV_TYPE_VGIC_ITS, &k->its_fd[i]);
		if (r >= 0)
			r = set(k->its_fd[i], GIC_GRP_ADDR, GIC_ADDR_TYPE_ITS, &base);
		if (r >= 0)
			r = set(k->its_fd[i], GIC_GRP_CTRL, GIC_CTRL_INIT, NULL);
		if (r < 0)
			return mig_error_set(err, r, "gic: creating ITS %u at %#llx: %s", i,
					     (unsigned long long)base, strerror(-r));
		k->its_base[i] = base;
		k->nr_its = i + 1;
	}
	return 0;
}

void gic_kernel_close(struct gic_kernel *k)
{
	if (k->relay_started) {
		pthread_mutex_lock(&k->lock);
		k->relay_quit = true;
		relay_wake(k);
		pthread_mutex_unlock(&k->lock);
		pthread_join(k->relay, NULL);
		k->relay_started = false;
	}
	for (unsigned i = 0; i < GIC_ITS_MAX; i++)
		if (k->its_fd[i] >= 0)
			close(k->its_fd[i]);
	if (k->v3_fd >= 0)
		close(k->v3_fd);
	if (k->wake_fd >= 0)
		close(k->wake_fd);
	k->v3_fd = k->wake_fd = -1;
	pthread_mutex_destroy(&k->lock);
}
