// SPDX-License-Identifier: MIT
/*
 * The GIC class's GICv4.0 direct injection against a real arm64 KVM: run
 * inside a QEMU guest booted at EL2 with a GICv4.0, an SMMUv3 and QEMU's
 * `edu` PCI device bound to vfio-pci (tests/realkernel/run-arm64-kernel.sh,
 * its second boot).  The edu's MSI is a real passthrough interrupt: its
 * eventfd, routed to an LPI of a VM's ITS with KVM_SET_GSI_ROUTING, becomes
 * a VLPI once KVM_IRQFD connects it through the irq bypass.
 *
 * The VMs are raw, as gic-kernel.c's (raw-vm.c: vCPUs made, never run;
 * what a guest driver would do is done here through the same registers),
 * and the class is stepped by hand, as the walker would step it:
 *   - source: the class forwards the declared LPI once the guest enables
 *     it (gic_vlpi_enable(); a boot forwards nothing) (the ITS save
 *     now refuses with EACCES), the edu raises its MSI into the VLPI while
 *     no vCPU runs, QUIESCED takes it off direct injection and raises it
 *     once in software, and FLUSHED and SAVED then succeed with the LPI's
 *     bit in the saved pending table; after that the edu's MSIs reach the
 *     VM through the kernel backend's relay;
 *   - destination: restored through the class, the LPI pending, nothing
 *     forwarded before START, forwarded at RUNNING;
 *   - a rollback (QUIESCED, then RUNNING) forwards again;
 *   - an LPI forwarded behind the class's back makes its save fail with
 *     EACCES, and the class goes back to RUNNING.
 * A VLPI's pending state is in its vPE's table, which nothing on GICv4.0
 * reads back: that the edu's MSI went there is seen only as its absence
 * from the software latch; what the class must keep of it is seen in the
 * pending tables the kernel writes.
 *
 * Prints "RK-PASS name" or "RK-FAIL name: why" per check and "RK-DONE
 * passed P failed F" at the end.
 *
 * usage: vlpi-kernel [PCI-ADDRESS]  (default: the first 1234:11e8 device)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/kvm.h>
#include <linux/vfio.h>

#include <migrate/device.h>

#include "gic/gic.h"
#include "gic/gic-uapi.h"
#include "raw-vm.h"
#include "rk.h"

/* The edu's interrupt as the guest sees it: its requester ID is its
 * DeviceID, its MSI vector 0 event 0, an LPI taken by vCPU 1 (raw-vm.h:
 * each LPI by vCPU LPI % VCPUS). */
#define EDU_EVENT 0
#define EDU_LPI   (GIC_LPI_BASE + 5)
_Static_assert(EDU_EVENT == 0, "guest_setup() maps a device's events from 0");
#define EDU_GSI   96             /* the irqfd's routing entry */

#define GITS_CMD_CLEAR 0x04      /* not in gic-uapi.h: the class has no use for it */

/* edu's registers (QEMU docs/specs/edu.rst) */
#define EDU_ID        0x00
#define EDU_IRQ_RAISE 0x60
#define EDU_IRQ_ACK   0x64

/* r, with why saying what went wrong */
__attribute__((format(printf, 4, 5)))
static int why_set(char *why, size_t n, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, n, fmt, ap);
	va_end(ap);
	return r;
}

/* ---- the edu through VFIO ---- */

struct edu {
	char addr[256];
	uint32_t rid;
	int container, group, dev, efd;
	volatile uint32_t *bar;
	size_t bar_bytes;
};

static int edu_find(char *addr, size_t n)
{
	DIR *d = opendir("/sys/bus/pci/devices");
	struct dirent *e;
	int r = -ENODEV;

	if (!d)
		return -errno;
	while (r < 0 && (e = readdir(d))) {
		char path[PATH_MAX], id[32] = "";
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vendor", e->d_name);
		f = fopen(path, "r");
		if (f && fgets(id, sizeof(id), f) && strtoul(id, NULL, 16) == 0x1234) {
			fclose(f);
			snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/device", e->d_name);
			f = fopen(path, "r");
			if (f && fgets(id, sizeof(id), f) && strtoul(id, NULL, 16) == 0x11e8) {
				snprintf(addr, n, "%s", e->d_name);
				r = 0;
			}
		}
		if (f)
			fclose(f);
	}
	closedir(d);
	return r;
}

static int edu_open(struct edu *u, const char *addr, char *why, size_t n)
{
	char link[PATH_MAX], group[PATH_MAX], path[PATH_MAX + 16];
	struct vfio_group_status gs = { .argsz = sizeof(gs) };
	unsigned dom, bus, slot, fn;
	ssize_t l;

	memset(u, 0, sizeof(*u));
	u->container = u->group = u->dev = u->efd = -1;
	snprintf(u->addr, sizeof(u->addr), "%s", addr);
	if (sscanf(addr, "%x:%x:%x.%x", &dom, &bus, &slot, &fn) != 4)
		return why_set(why, n, -EINVAL, "%s is not a PCI address", addr);
	u->rid = bus << 8 | slot << 3 | fn;
	snprintf(link, sizeof(link), "/sys/bus/pci/devices/%s/iommu_group", addr);
	l = readlink(link, group, sizeof(group) - 1);
	if (l < 0)
		return why_set(why, n, -errno, "%s: %s (no IOMMU group: is there an SMMU?)", link,
			       strerror(errno));
	group[l] = 0;
	snprintf(path, sizeof(path), "/dev/vfio/%s", basename(group));
	u->container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	if (u->container < 0)
		return why_set(why, n, -errno, "/dev/vfio/vfio: %s", strerror(errno));
	if (ioctl(u->container, VFIO_GET_API_VERSION) != VFIO_API_VERSION ||
	    ioctl(u->container, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU) != 1)
		return why_set(why, n, -ENOTSUP, "the container speaks no VFIO type1");
	u->group = open(path, O_RDWR | O_CLOEXEC);
	if (u->group < 0)
		return why_set(why, n, -errno, "%s: %s (bound to vfio-pci?)", path, strerror(errno));
	if (ioctl(u->group, VFIO_GROUP_GET_STATUS, &gs) < 0 ||
	    !(gs.flags & VFIO_GROUP_FLAGS_VIABLE))
		return why_set(why, n, -EBUSY, "%s is not viable (another device of its group is "
			       "bound to another driver)", path);
	if (ioctl(u->group, VFIO_GROUP_SET_CONTAINER, &u->container) < 0 ||
	    ioctl(u->container, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU) < 0)
		return why_set(why, n, -errno, "%s into a type1 container: %s", path, strerror(errno));
	u->dev = ioctl(u->group, VFIO_GROUP_GET_DEVICE_FD, addr);
	if (u->dev < 0)
		return why_set(why, n, -errno, "VFIO_GROUP_GET_DEVICE_FD %s: %s", addr,
			       strerror(errno));
	return 0;
}

/* BAR0 mapped, memory decoding and bus mastering on (its MSI is a write). */
static int edu_map(struct edu *u, char *why, size_t n)
{
	struct vfio_region_info cfg = { .argsz = sizeof(cfg), .index = VFIO_PCI_CONFIG_REGION_INDEX };
	struct vfio_region_info bar = { .argsz = sizeof(bar), .index = VFIO_PCI_BAR0_REGION_INDEX };
	uint16_t cmd = 0;
	void *p;

	if (ioctl(u->dev, VFIO_DEVICE_GET_REGION_INFO, &cfg) < 0 ||
	    ioctl(u->dev, VFIO_DEVICE_GET_REGION_INFO, &bar) < 0)
		return why_set(why, n, -errno, "VFIO_DEVICE_GET_REGION_INFO: %s", strerror(errno));
	if (!(bar.flags & VFIO_REGION_INFO_FLAG_MMAP) || bar.size < 0x100)
		return why_set(why, n, -ENOTSUP, "BAR0 of %llu bytes, flags %#x: not mappable",
			       (unsigned long long)bar.size, bar.flags);
	if (pread(u->dev, &cmd, 2, (off_t)cfg.offset + 4) != 2)
		return why_set(why, n, -EIO, "reading the command register: %s", strerror(errno));
	cmd |= 0x6;
	if (pwrite(u->dev, &cmd, 2, (off_t)cfg.offset + 4) != 2)
		return why_set(why, n, -EIO, "writing the command register: %s", strerror(errno));
	p = mmap(NULL, bar.size, PROT_READ | PROT_WRITE, MAP_SHARED, u->dev, (off_t)bar.offset);
	if (p == MAP_FAILED)
		return why_set(why, n, -errno, "mmap BAR0: %s", strerror(errno));
	u->bar = p;
	u->bar_bytes = bar.size;
	return 0;
}

/* MSI vector 0 signals u->efd. */
static int edu_msi(struct edu *u, char *why, size_t n)
{
	struct vfio_irq_info info = { .argsz = sizeof(info), .index = VFIO_PCI_MSI_IRQ_INDEX };
	union {
		struct vfio_irq_set s;
		uint8_t b[sizeof(struct vfio_irq_set) + sizeof(int32_t)];
	} set = { .s = { .argsz = sizeof(set), .index = VFIO_PCI_MSI_IRQ_INDEX, .start = 0,
			 .count = 1,
			 .flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER } };
	int32_t fd;

	if (ioctl(u->dev, VFIO_DEVICE_GET_IRQ_INFO, &info) < 0 || info.count < 1)
		return why_set(why, n, -ENOTSUP, "the edu has no MSI (%s)", strerror(errno));
	u->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (u->efd < 0)
		return why_set(why, n, -errno, "eventfd: %s", strerror(errno));
	fd = u->efd;
	memcpy(set.s.data, &fd, sizeof(fd));
	if (ioctl(u->dev, VFIO_DEVICE_SET_IRQS, &set) < 0)
		return why_set(why, n, -errno, "VFIO_DEVICE_SET_IRQS MSI: %s", strerror(errno));
	return 0;
}

/* One MSI: the edu raises on each write of its raise register. */
static void edu_raise(struct edu *u)
{
	u->bar[EDU_IRQ_RAISE / 4] = 1;
	u->bar[EDU_IRQ_ACK / 4] = 1;
	usleep(20000);
}

/* What the eventfd has counted, waiting up to ms for the first signal. */
static uint64_t efd_take(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	uint64_t v = 0;

	if (poll(&p, 1, ms) == 1 && read(fd, &v, sizeof(v)) != sizeof(v))
		v = 0;
	return v;
}

static void edu_close(struct edu *u)
{
	if (u->bar)
		munmap((void *)u->bar, u->bar_bytes);
	if (u->dev >= 0)
		close(u->dev);
	if (u->group >= 0)
		close(u->group);
	if (u->container >= 0)
		close(u->container);
	if (u->efd >= 0)
		close(u->efd);
}

/* ---- the raw VMs (raw-vm.c) ---- */

/* The kernel's verdict on the ITS tables: EACCES while a GICv4.0 LPI is
 * forwarded (its pending state is in the VPT, which nothing can read). */
static int its_save(struct vm *vm)
{
	return attr(vm, 0, true, GIC_GRP_CTRL, GIC_CTRL_ITS_SAVE_TABLES, NULL);
}

/* The edu's MSI as this VM's interrupt controller takes it: GSI EDU_GSI, a
 * write of the event to the ITS's doorbell with the DeviceID. */
static int msi_route(struct vm *vm, uint32_t devid)
{
	uint64_t db = GITS_BASE + GITS_TRANSLATER;
	union {
		struct kvm_irq_routing r;
		uint8_t b[sizeof(struct kvm_irq_routing) + sizeof(struct kvm_irq_routing_entry)];
	} rt = { .r = { .nr = 1 } };
	struct kvm_irq_routing_entry e = {
		.gsi = EDU_GSI, .type = KVM_IRQ_ROUTING_MSI, .flags = KVM_MSI_VALID_DEVID,
		.u.msi = { .address_lo = (uint32_t)db, .address_hi = (uint32_t)(db >> 32),
			   .data = EDU_EVENT, .devid = devid },
	};

	memcpy(rt.r.entries, &e, sizeof(e));
	return ioctl(vm->fd, KVM_SET_GSI_ROUTING, &rt) < 0 ? -errno : 0;
}

static int raw_irqfd(struct vm *vm, int efd, bool on)
{
	struct kvm_irqfd f = { .fd = (uint32_t)efd, .gsi = EDU_GSI,
			       .flags = on ? 0 : KVM_IRQFD_FLAG_DEASSIGN };

	return ioctl(vm->fd, KVM_IRQFD, &f) < 0 ? -errno : 0;
}

/* Whether the LPI is pending in software now: SAVE_PENDING_TABLES writes
 * it out.  -1 when the kernel refuses. */
static int sw_pending(struct vm *vm)
{
	int r = attr(vm, -1, true, GIC_GRP_CTRL, GIC_CTRL_SAVE_PENDING_TABLES, NULL);

	return r < 0 ? -1 : pend_bit(vm, EDU_LPI);
}

/* The class over this VM, the edu's LPI declared (or not). */
static int class_init(struct vm *vm, const struct edu *u, bool declared, int state,
		      struct mig_error *err)
{
	struct gic_config cfg = { .nr_vcpus = VCPUS, .nr_irqs = 128, .nr_its = 1,
				  .v4 = GIC_V4_0 };

	if (declared) {
		cfg.vlpis[0] = (struct gic_vlpi){ .its = 0, .devid = u->rid, .event = EDU_EVENT,
						  .gsi = EDU_GSI, .fd = u->efd };
		cfg.nr_vlpis = 1;
	}
	return gic_dev_init(&vm->g, &cfg, &gic_kernel_backend, &vm->k, state, err);
}

/* A fresh VM with the class over its GIC (in `state`, the edu's LPI declared
 * or not) and the edu's MSI routed; a source's guest has mapped it too (a
 * destination's ITS is restored). */
static int vm_ready(int kvm, struct vm *vm, const struct edu *u, bool booted, bool declared,
		    int state, char *why, size_t n)
{
	/* the edu's one event: guest_setup() maps a device's events from 0 */
	const struct raw_map map = { .devid = u->rid, .events = 1, .lpi = EDU_LPI };
	struct mig_error err = { 0 };
	int r = vm_create(kvm, vm, &err);

	if (r >= 0)
		r = class_init(vm, u, declared, state, &err);
	if (r < 0)
		snprintf(why, n, "%s", err.msg);
	if (r >= 0 && booted && (r = guest_setup(vm, &map, 1)) < 0)
		snprintf(why, n, "the guest's ITS setup: %s (CREADR %#llx, CWRITER %#x)",
			 strerror(-r), (unsigned long long)its_get(vm, GITS_CREADR), vm->cmd_at);
	if (r >= 0 && (r = msi_route(vm, u->rid)) < 0)
		snprintf(why, n, "KVM_SET_GSI_ROUTING: %s", strerror(-r));
	return r;
}

static uint64_t relayed(struct vm *vm)
{
	return __atomic_load_n(&vm->k.relayed_msis, __ATOMIC_RELAXED);
}

int main(int argc, char **argv)
{
	struct mig_error err = { 0 };
	struct vm src, dst, vm;
	struct edu u;
	char addr[256], why[512] = "";
	uint8_t *sent = NULL;
	uint64_t n;
	int kvm, r;

	setvbuf(stdout, NULL, _IOLBF, 0);
	src.fd = dst.fd = vm.fd = -1;
	memset(&u, 0, sizeof(u));
	u.container = u.group = u.dev = u.efd = -1;
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	result(kvm >= 0, "dev-kvm", "/dev/kvm: %s", strerror(errno));
	if (kvm < 0)
		goto out;

	/* 1. the edu through VFIO, its MSI into an eventfd */
	if (argc > 1)
		r = why_set(addr, sizeof(addr), 0, "%s", argv[1]);
	else if ((r = edu_find(addr, sizeof(addr))) < 0)
		why_set(why, sizeof(why), r, "no 1234:11e8 PCI device (QEMU's -device edu)");
	if (r >= 0)
		r = edu_open(&u, addr, why, sizeof(why));
	result(r >= 0, "edu-vfio-open", "%s", why);
	if (r < 0)
		goto out;
	printf("RK-INFO edu %s, DeviceID %#x, /dev/vfio group open\n", u.addr, u.rid);
	r = edu_map(&u, why, sizeof(why));
	if (r >= 0 && (u.bar[EDU_ID / 4] & 0xff) != 0xed)
		r = why_set(why, sizeof(why), -ENODEV, "identification %#x", u.bar[EDU_ID / 4]);
	result(r >= 0, "edu-bar0-mapped", "%s", why);
	if (r >= 0)
		r = edu_msi(&u, why, sizeof(why));
	result(r >= 0, "edu-msi-eventfd", "%s", why);
	if (r < 0)
		goto out;
	edu_raise(&u);
	n = efd_take(u.efd, 1000);
	result(n >= 1, "edu-raises-msi", "the eventfd counted %llu after a raise (MSI through the "
	       "SMMU and the host's ITS)", (unsigned long long)n);
	efd_take(u.efd, 50);

	/* 2. the source: the guest's ITS maps the edu's interrupt and the guest
	 *    enables it: the class forwards it then (a boot forwards nothing) */
	r = vm_ready(kvm, &src, &u, true, true, GIC_CREATED, why, sizeof(why));
	result(r >= 0, "source-its-and-route", "%s", why);
	if (r < 0)
		goto out;
	r = step_to(&src.g, GIC_RUNNING, &err);
	result(r >= 0 && !src.g.cfg.vlpis[0].forwarded && its_save(&src) == 0,
	       "boot-forwards-nothing", "%d %s", r, err.msg);
	r = gic_vlpi_enable(&src.g, 0, &err);
	result(r >= 0 && src.g.cfg.vlpis[0].forwarded, "class-forwards-when-enabled", "%s",
	       err.msg);
	r = its_save(&src);
	result(r == -EACCES, "source-vlpi-forwarded", "ITS_SAVE_TABLES gave %d (%s), not EACCES: "
	       "the bypass was not made (is kvm-arm.vgic_v4_enable=1 on?)", r, strerror(-r));

	/* 3. the edu raises while no vCPU runs: into the VLPI's pending table,
	 *    which GICv4.0 cannot read back, not into the software latch */
	edu_raise(&u);
	/* the emulated device may post its MSI a little later: for 200 ms it
	 * must stay out of the software latch (and so be in the VPT by then) */
	for (int i = 0; i < 20; i++) {
		r = sw_pending(&src);
		if (r != 0)
			break;
		usleep(10000);
	}
	result(r == 0, "forwarded-msi-not-in-software", "the LPI's software pending bit is %d "
	       "after a raise with the VLPI mapped (1: the MSI went through the eventfd)", r);

	/* 4. the source's save: QUIESCED takes the VLPI off direct injection
	 *    (its VPT bit goes with the DISCARD) and raises it in software */
	mig_error_clear(&err);
	r = step_to(&src.g, GIC_QUIESCED, &err);
	result(r >= 0 && !src.g.cfg.vlpis[0].forwarded && src.g.vlpis_off == 1 &&
	       (src.g.core.notes & GIC_NOTE_VLPI_OFF), "quiesce-unforwards",
	       "%d %s (forwarded %d, off %u, notes %#x)", r, err.msg,
	       src.g.cfg.vlpis[0].forwarded, src.g.vlpis_off, src.g.core.notes);
	r = step_to(&src.g, GIC_FLUSHED, &err);
	result(r >= 0, "flush-after-quiesce", "%s", err.msg);
	result(pend_bit(&src, EDU_LPI), "saved-pending-bit",
	       "LPI %u is not pending in the saved pending table: the interrupt the VLPI held "
	       "was lost", EDU_LPI);
	if (r >= 0)
		r = step_to(&src.g, GIC_SAVED, &err);
	result(r >= 0 && src.g.core.state == GIC_SAVED, "save-after-quiesce", "%s", err.msg);
	/* what the migration sends: guest RAM as it is now, and the blob */
	sent = malloc(RAM_BYTES);
	if (sent)
		memcpy(sent, src.ram, RAM_BYTES);

	/* and off direct injection the edu's MSIs go through the relay: the
	 * guest clears the LPI (an ITS CLEAR), the edu raises again */
	r = cmd(&src, GITS_CMD_CLEAR | (uint64_t)u.rid << 32, EDU_EVENT, 0);
	result(r >= 0 && sw_pending(&src) == 0, "its-clear", "%d: the LPI stayed pending", r);
	n = relayed(&src);
	edu_raise(&u);
	for (int i = 0; i < 200 && relayed(&src) == n; i++)
		usleep(10000);
	result(relayed(&src) == n + 1 && sw_pending(&src) == 1, "relay-delivers-in-software",
	       "relayed %llu MSIs (was %llu), LPI pending %d", (unsigned long long)relayed(&src),
	       (unsigned long long)n, sw_pending(&src));

	/* 5. the destination: RAM, then the class's restore */
	r = vm_ready(kvm, &dst, &u, false, true, GIC_CREATED, why, sizeof(why));
	if (r >= 0 && !sent)
		r = why_set(why, sizeof(why), -ENOMEM, "out of memory");
	if (r >= 0) {
		struct mig_mem_reader rd;

		memcpy(dst.ram, sent, RAM_BYTES);
		mig_error_clear(&err);
		r = step_to(&dst.g, GIC_RESTORING, &err);
		mig_mem_reader_init(&rd, src.g.saved.data, src.g.saved.len);
		if (r >= 0)
			r = mig_device_load(&dst.g.core, &rd.r, &err);
		if (r >= 0)
			r = step_to(&dst.g, GIC_RESTORED, &err);
		if (r < 0)
			why_set(why, sizeof(why), r, "%s", err.msg);
	}
	result(r >= 0, "restore", "%s", why);
	if (r < 0)
		goto out;
	r = sw_pending(&dst);
	result(r == 1, "restored-lpi-pending", "the destination's LPI %u pending: %d", EDU_LPI, r);
	r = its_save(&dst);
	result(r == 0, "nothing-forwarded-before-start", "ITS_SAVE_TABLES on the restored "
	       "destination: %d (%s)", r, strerror(-r));
	/* one consumer of the eventfd at a time: the source's relay stops */
	vm_destroy(&src);
	mig_error_clear(&err);
	r = step_to(&dst.g, GIC_RUNNING, &err);
	result(r >= 0 && dst.g.vlpis_on == 1, "destination-forwards-at-start", "%s (on %u)",
	       err.msg, dst.g.vlpis_on);
	r = its_save(&dst);
	result(r == -EACCES, "destination-vlpi-forwarded", "ITS_SAVE_TABLES gave %d (%s), not "
	       "EACCES", r, strerror(-r));
	r = sw_pending(&dst);
	result(r == 0, "pending-moved-to-vlpi", "the software pending bit is %d after forwarding "
	       "(the kernel moves it to the VLPI)", r);
	vm_destroy(&dst);

	/* 6. a rollback: QUIESCED, then RUNNING again, forwards again */
	r = vm_ready(kvm, &vm, &u, true, true, GIC_CREATED, why, sizeof(why));
	result(r >= 0, "rollback-source-ready", "%s", why);
	if (r < 0)
		goto out;
	mig_error_clear(&err);
	r = step_to(&vm.g, GIC_RUNNING, &err);
	if (r >= 0)
		r = gic_vlpi_enable(&vm.g, 0, &err);
	result(r >= 0 && its_save(&vm) == -EACCES, "rollback-source-forwarded", "%d: %s", r,
	       err.msg);
	r = step_to(&vm.g, GIC_QUIESCED, &err);
	result(r >= 0 && its_save(&vm) == 0, "rollback-quiesced-unforwarded", "%d: %s", r, err.msg);
	r = step_to(&vm.g, GIC_RUNNING, &err);
	result(r >= 0 && vm.g.cfg.vlpis[0].forwarded && its_save(&vm) == -EACCES,
	       "rollback-forwards-again", "%d: %s (ITS_SAVE_TABLES %d)", r, err.msg, its_save(&vm));
	vm_destroy(&vm);

	/* 7. an LPI forwarded that the class was not told about: its save is
	 *    refused, and the VM keeps running */
	r = vm_ready(kvm, &vm, &u, true, false, GIC_RUNNING, why, sizeof(why));
	if (r >= 0 && (r = raw_irqfd(&vm, u.efd, true)) < 0)
		why_set(why, sizeof(why), r, "KVM_IRQFD: %s", strerror(-r));
	result(r >= 0 && its_save(&vm) == -EACCES, "undeclared-vlpi-forwarded", "%d: %s", r, why);
	if (r < 0)
		goto out;
	mig_error_clear(&err);
	r = step_to(&vm.g, GIC_SAVED, &err);
	result(r == -EACCES && vm.g.core.state == GIC_QUIESCED && strstr(err.msg, "GICv4.0"),
	       "undeclared-vlpi-refused", "%d in state %s: %s", r,
	       mig_device_state_name(&vm.g.core), err.msg);
	mig_error_clear(&err);
	r = step_to(&vm.g, GIC_RUNNING, &err);
	result(r >= 0 && vm.g.core.state == GIC_RUNNING && its_save(&vm) == -EACCES,
	       "undeclared-refusal-rolls-back", "%d: %s", r, err.msg);
	raw_irqfd(&vm, u.efd, false);
	vm_destroy(&vm);
out:
	if (src.fd >= 0)
		vm_destroy(&src);
	if (dst.fd >= 0)
		vm_destroy(&dst);
	if (vm.fd >= 0)
		vm_destroy(&vm);
	free(sent);
	edu_close(&u);
	return rk_done();
}
