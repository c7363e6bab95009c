/* SPDX-License-Identifier: MIT */
/*
 * The GIC device class (KERNEL-UAPI.md §6): an arm64 VM's vGICv3 and its
 * ITSes, one device per VM.  It owns the order the kernel needs: on the
 * source the LPI pending tables and the ITS tables are written into guest
 * RAM with every vCPU and device stopped and before the final dirty sync
 * (the class's save writes guest RAM), then the registers are read; on the
 * destination the redistributors come before the ITSes, and each ITS gets
 * every register but CTLR before RESTORE_TABLES and CTLR last.
 *
 * GICv4 direct injection: an LPI a passthrough device raises may reach the
 * guest as a VLPI (forwarded through the irqfd bypass).  The class owns
 * that forwarding on both sides (struct gic_vlpi), because its order is
 * part of the migration: on a GICv4.0 host a forwarded LPI makes the ITS
 * save fail (EACCES), so the class takes it off direct injection while the
 * vCPUs still run, and puts it back on a rollback; on the destination it
 * forwards only once RESTORE_TABLES and GITS_CTLR are in (before, the
 * kernel cannot map the VLPI, says so to no one, and never tries again).
 * Taking an LPI off direct injection discards what its VLPI had pending
 * (the kernel's DISCARD; GICv4.0 cannot read it first), so the class
 * raises each such LPI once in software after: at most one spurious
 * interrupt, never a lost one.
 *
 * The device is behind a backend: `kernel` (the vgic-v3 and ITS device fds,
 * KVM_IRQFD) or `sim` (sim.h, the kernel's contract in this process).
 */
#ifndef DEVICES_GIC_H
#define DEVICES_GIC_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <migrate/buf.h>
#include <migrate/device.h>

enum gic_state {
	GIC_CREATED,     /* vgic-v3 and ITSes created and initialised, not run */
	GIC_RUNNING,     /* the VM runs with it; forwarded LPIs are forwarded */
	GIC_QUIESCED,    /* source: no LPI is forwarded that the save would refuse */
	GIC_FLUSHED,     /* pending and ITS tables written into guest RAM */
	GIC_SAVED,       /* registers read */
	GIC_RESTORING,   /* destination: its state is going in */
	GIC_RESTORED,    /* every register and table in; nothing forwarded yet */
	GIC_FAILED,      /* a restore failed: the destination VM is discarded */
	GIC_DEAD,
	GIC_ST_N
};

/* GICv4 direct injection on a host: none, 4.0 or 4.1 (VLPI state migration). */
enum gic_v4 {
	GIC_V4_NONE = 0,
	GIC_V4_0 = 40,
	GIC_V4_1 = 41,
};

#define GIC_ITS_MAX      4
#define GIC_VCPUS_MAX    64
#define GIC_IRQS_MAX     1024      /* SGIs, PPIs and SPIs: KVM's VGIC_MAX_IRQS */
#define GIC_VLPIS_MAX    64

/* An LPI a passthrough device raises, forwarded to the guest directly. */
struct gic_vlpi {
	uint32_t its;             /* the ITS it translates through */
	uint32_t devid, event;
	int gsi, fd;              /* kernel: the irqfd's routing entry and eventfd */
	bool wanted;              /* the guest enabled it: direct injection wanted */
	bool forwarded;           /* its direct injection is on now */
};

struct gic_dev;

/*
 * Where the GIC lives.  attr() is KVM_{GET,SET}_DEVICE_ATTR on the vgic-v3
 * (its < 0) or on ITS `its`, and returns what the kernel's would: 0 or
 * -errno.  forward() turns a VLPI's direct injection on or off (the irqfd
 * with its bypass; KVM_IRQFD itself reports nothing of the bypass, so
 * getting the order right is the caller's job).  dirty_sync(), optional,
 * ORs the guest pages the device wrote since the last call into bitmap (a
 * bit per page from GPA base): the kernel's writes are in KVM's own dirty
 * log, a sim's are not.
 */
struct gic_backend {
	const char *name;
	int (*attr)(struct gic_dev *g, int its, bool set, uint32_t group, uint64_t attr,
		    void *val);
	int (*forward)(struct gic_dev *g, struct gic_vlpi *l, bool on);
	/* The LPI raised once in software (KVM_SIGNAL_MSI). */
	int (*inject)(struct gic_dev *g, struct gic_vlpi *l);
	int (*dirty_sync)(struct gic_dev *g, uint64_t *bitmap, uint64_t *ret_count);
};

struct gic_config {
	unsigned nr_vcpus;
	uint32_t nr_irqs;         /* KVM_DEV_ARM_VGIC_GRP_NR_IRQS: SGIs+PPIs+SPIs */
	unsigned nr_its;
	enum gic_v4 v4;           /* what this host has */
	struct gic_vlpi vlpis[GIC_VLPIS_MAX];
	unsigned nr_vlpis;
};

struct gic_dev {
	struct mig_device core;
	const struct gic_backend *be;
	void *be_data;
	struct gic_config cfg;
	/* each ITS's table ABI revision (GITS_IIDR), read at init: with the
	 * vCPUs running the kernel refuses the read */
	uint32_t its_rev[GIC_ITS_MAX];
	struct mig_buf saved;     /* SAVED: the state blob */
	/* what the run did: LPIs taken off direct injection (source) or
	 * forwarded after the restore (destination) */
	unsigned vlpis_off, vlpis_on;
	/* timings of the kernel calls, ns: SAVE_PENDING_TABLES, ITS_SAVE_TABLES,
	 * RESTORE_TABLES (all ITSes) */
	uint64_t save_pending_ns, its_save_ns, its_restore_ns;
};

/* What a run reports of it (struct mig_device's notes). */
#define GIC_NOTE_VLPI_OFF (1U << 0)   /* VLPIs went to software delivery to be saved */

extern const struct mig_device_class gic_class;

/* A device over an initialised vgic-v3 and cfg->nr_its ITSes, before any
 * vCPU runs: CREATED, or RUNNING for a VM that boots with it (state). */
int gic_dev_init(struct gic_dev *g, const struct gic_config *cfg, const struct gic_backend *be,
		 void *be_data, int state, struct mig_error *err);
void gic_dev_fini(struct gic_dev *g);
/* The guest enabled the interrupt behind declared VLPI i (its device's MSI
 * on, the event mapped in its ITS): forward it now, and wherever the VM
 * runs from here on.  The kernel makes no VLPI for an event its ITS does
 * not translate yet, and tells no one, so a VMM calls this when the guest
 * enables the vector, never before. */
int gic_vlpi_enable(struct gic_dev *g, unsigned i, struct mig_error *err);
/* vCPU i's affinity as the attributes name it (KVM's reset MPIDR for vcpu_id i). */
uint64_t gic_vcpu_affinity(unsigned i);

/* The kernel backend: be_data is a struct gic_kernel.  A VLPI off direct
 * injection has its irqfd deassigned; a thread then relays its eventfd as
 * KVM_SIGNAL_MSI, so the device's interrupts reach the guest in software
 * (and their pending state is the kernel's to save). */
struct gic_kernel {
	int vm_fd;
	int v3_fd;
	int its_fd[GIC_ITS_MAX];
	uint64_t its_base[GIC_ITS_MAX];
	unsigned nr_its;
	pthread_mutex_t lock;
	pthread_t relay;
	bool relay_started, relay_quit;
	int wake_fd;
	struct gic_vlpi *relayed[GIC_VLPIS_MAX];
	unsigned nr_relayed;
	uint64_t relayed_msis;
};
extern const struct gic_backend gic_kernel_backend;
/* Create and initialise a vgic-v3 (after every vCPU exists) and nr_its
 * ITSes at the given guest addresses; the redistributors follow each other
 * from redist_base, 128 KiB each. */
int gic_kernel_create(struct gic_kernel *k, int vm_fd, uint32_t nr_irqs, uint64_t dist_base,
		      uint64_t redist_base, unsigned nr_its, const uint64_t *its_base,
		      struct mig_error *err);
void gic_kernel_close(struct gic_kernel *k);

#endif
