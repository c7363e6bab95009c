/* SPDX-License-Identifier: MIT */
/*
 * The GIC class's `sim` backend: a vGICv3 with ITSes in this process that
 * keeps the kernel's contract (KERNEL-UAPI.md §6, Linux 6.12's vgic-its.c
 * and vgic-v4.c) call for call and errno for errno, on tables in real guest
 * RAM, and models what no host here runs: GICv4.1's VLPI state migration
 * and GICv4.0's refusal.
 *
 *   - attributes: every register the class reads and writes, with the
 *     kernel's rules (EBUSY while a vCPU runs; PROPBASER and PENDBASER
 *     ignored once LPIs are on; CBASER and BASERs ignored, CREADR refused
 *     while the ITS is enabled; an enable ignored while CBASER or a table
 *     BASER is invalid; CBASER zeroes CREADR; IIDR picks the table ABI);
 *   - SAVE_PENDING_TABLES and ITS_SAVE_TABLES write guest RAM in the
 *     kernel's formats (ABI revision 0), which only this backend's dirty
 *     log reports; RESTORE_TABLES reads them back, refuses what is
 *     inconsistent (EINVAL), and takes each LPI's pending bit from its
 *     redistributor's pending table, wherever PENDBASER points then;
 *   - a guest: it programs its redistributors and ITS (gic_sim_guest_boot())
 *     and counts the LPIs it takes in guest RAM, one u32 per LPI;
 *   - GICv4: a forwarded LPI raised by its device goes to the vPE's pending
 *     table (VPT), delivered at once while the vCPUs run; forwarding
 *     transfers the software pending state to the VPT and needs the ITS
 *     translation (without it the bypass is silently not made: software
 *     delivery); turning it off discards what the VPT held (the kernel's
 *     DISCARD); on 4.0 SAVE_PENDING_TABLES cannot read the VPT and
 *     ITS_SAVE_TABLES refuses a forwarded LPI with EACCES; on 4.1 the save
 *     reads the VPT into the pending table.
 */
#ifndef DEVICES_GIC_SIM_H
#define DEVICES_GIC_SIM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "gic.h"
#include "gic-uapi.h"

#define GIC_SIM_LPIS      256       /* LPIs 8192..8447 */
#define GIC_SIM_DEVICES   16        /* device ids 0..15 per ITS */
#define GIC_SIM_EVENTS    32        /* event ids per device */

struct gic_sim_opts {
	unsigned nr_vcpus;
	uint32_t nr_irqs;
	unsigned nr_its;
	enum gic_v4 v4;
	uint8_t *ram;             /* guest RAM, mapped */
	uint64_t ram_gpa;         /* its guest address */
	uint64_t ram_bytes;
	uint64_t its_base[GIC_ITS_MAX];   /* where each ITS's frame is (its doorbell) */
	/* the guest's area for its tables and its counts of delivered LPIs
	 * (gic_sim_guest_boot()); GIC_SIM_AREA bytes, 64 KiB aligned */
	uint64_t area_gpa;
};
#define GIC_SIM_AREA (1ULL << 20)

struct gic_sim_lpi {
	bool mapped;              /* an ITE translates to it */
	bool enabled;             /* its configuration byte, as read at MAPTI, INV or restore */
	bool pending;             /* software pending latch */
	bool hw;                  /* forwarded: a VLPI */
	bool vpt;                 /* pending in the vPE's table (hw only) */
	unsigned vcpu;            /* its collection's target */
};

struct gic_sim_ite {
	bool valid;
	uint32_t lpi;             /* INTID */
	uint16_t icid;
};

struct gic_sim_its {
	bool init;
	bool enabled;
	uint32_t abi_rev;
	uint64_t cbaser, creadr, cwriter;
	uint64_t baser[GITS_BASER_NR];
	/* translation state */
	struct {
		bool valid;
		uint64_t itt;
		uint32_t bits;    /* event id bits */
		struct gic_sim_ite ite[GIC_SIM_EVENTS];
	} dev[GIC_SIM_DEVICES];
	struct {
		bool valid;
		uint32_t vcpu;
	} coll[GIC_SIM_DEVICES];
	uint64_t cmd_errors;      /* commands the ITS could not carry out */
};

struct gic_sim {
	struct gic_sim_opts o;
	pthread_mutex_t lock;
	bool init;                /* vgic-v3 CTRL_INIT */
	bool running;             /* the vCPUs run (their vPEs are resident) */
	bool masked;              /* the guest has interrupts masked: it takes none */
	/* distributor */
	uint32_t gicd_ctlr, gicd_iidr;
	uint32_t dist[0x10000 / 4];   /* the SPI register file, by offset */
	uint32_t levels[GIC_IRQS_MAX / 32];
	/* redistributors and CPU interfaces */
	struct {
		uint32_t ctlr;
		uint64_t propbaser, pendbaser;
		uint32_t sgi[0x1000 / 4];     /* the SGI frame's register file */
		uint64_t icc[16];
	} rd[GIC_VCPUS_MAX];
	struct gic_sim_its its[GIC_ITS_MAX];
	struct gic_sim_lpi lpi[GIC_SIM_LPIS];
	/* pages of guest RAM it wrote since the last dirty sync */
	uint64_t *dirty;
	/* what happened */
	uint64_t msis, msis_dropped, vlpis_direct, vlpis_discarded, delivered;
	unsigned calls;           /* attribute calls, for the journal */
	char journal[2048][40];   /* the last attribute calls: "set|get ITS:group:attr" */
};

extern const struct gic_backend gic_sim_backend;

int gic_sim_init(struct gic_sim *s, const struct gic_sim_opts *o, struct mig_error *err);
void gic_sim_fini(struct gic_sim *s);
/* CTRL_INIT of the vgic-v3 and every ITS, as the VMM does once the vCPUs exist. */
int gic_sim_create(struct gic_sim *s);

/* The vCPUs start or stop: while they run, attribute calls get EBUSY and
 * the guest takes what is pending. */
void gic_sim_set_running(struct gic_sim *s, bool on);
/* The guest masks interrupts (PSTATE.I): what is pending stays pending,
 * in its VPT for a VLPI, until it unmasks. */
void gic_sim_set_masked(struct gic_sim *s, bool on);

/* The guest programs its GIC: LPI configuration (every LPI it uses
 * enabled) and pending tables, an ITS's device and collection tables and
 * command queue, a collection per vCPU, and `nr_events` events of each of
 * `nr_devices` devices mapped to LPIs from 8192 up, round-robin over the
 * vCPUs.  ITS i's tables follow ITS i-1's in the area. */
int gic_sim_guest_boot(struct gic_sim *s, unsigned nr_devices, unsigned nr_events,
		       struct mig_error *err);
/* The guest takes every pending, enabled LPI it can (its vCPUs run) and
 * counts it in its area.  Returns how many. */
unsigned gic_sim_deliver(struct gic_sim *s);
/* The guest's count of deliveries of LPI `intid`, read from its RAM. */
uint32_t gic_sim_delivered(const struct gic_sim *s, uint32_t intid);
/* The guest's ITS commands, as a guest issues them (queue in RAM, then
 * CWRITER through the MMIO frame). */
int gic_sim_guest_cmd(struct gic_sim *s, unsigned its, const uint64_t cmd[4]);

/* KVM_SIGNAL_MSI, or a passthrough device's MSI (the same in the kernel):
 * 1 made pending (a forwarded LPI's in its VPT), 0 no translation, -EBUSY
 * when that ITS is disabled. */
int gic_sim_msi(struct gic_sim *s, unsigned its, uint32_t devid, uint32_t event);
/* The LPI an (ITS, device, event) translates to, or 0. */
uint32_t gic_sim_translate(struct gic_sim *s, unsigned its, uint32_t devid, uint32_t event);
bool gic_sim_lpi_forwarded(struct gic_sim *s, uint32_t intid);

/* Where the guest's tables and counts are (gic_sim_guest_boot()). */
#define GIC_SIM_PROP_OFF      0x00000
#define GIC_SIM_COUNT_OFF     0x10000      /* u32 per LPI */
#define GIC_SIM_PEND_OFF      0x20000      /* 64 KiB per vCPU, 4 vCPUs at most */
#define GIC_SIM_ITS_OFF       0x60000      /* per ITS: */
#define GIC_SIM_ITS_SIZE      0x40000
#define GIC_SIM_ITS_CMDQ      0x00000      /*   command queue, 64 KiB */
#define GIC_SIM_ITS_DT        0x10000      /*   device table, 64 KiB */
#define GIC_SIM_ITS_CT        0x20000      /*   collection table, 64 KiB */
#define GIC_SIM_ITS_ITT       0x30000      /*   ITTs, 256 bytes per device */
#define GIC_SIM_VCPUS_MAX     4
#define GIC_SIM_ID_BITS       14           /* LPIs below 16384 */

#endif
