/* SPDX-License-Identifier: MIT */
/*
 * The lab's MSI devices (one device per VM standing for all of them): LPIs
 * raised at a set rate through the VM's interrupt controller, so that what
 * a migration does to interrupts can be checked.  Each LPI k is raised
 * again only once the guest has counted the last one delivered, and both
 * counts live in guest RAM (raised[k], written here; delivered[k], by the
 * guest), so they travel with it and agree at any quiet moment: an LPI
 * delivered twice or never shows as a difference, whichever side the
 * guest ran on.
 *
 * At QUIESCE, with the vCPUs stopped, it raises every LPI it may once more:
 * they are pending at the switchover, and must be taken on the destination.
 */
#ifndef DEVICES_MSI_H
#define DEVICES_MSI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <migrate/device.h>

enum msi_state {
	MSI_CREATED,     /* made, not raising (a boot or a destination) */
	MSI_RUNNING,     /* raising */
	MSI_QUIESCED,    /* stopped, its last raises pending in the VM */
	MSI_DEAD,
	MSI_ST_N
};

#define MSI_LPIS_MAX 256
/* An LPI raised and not delivered for this long while the VM runs is lost
 * (generous: a guest under TCG takes milliseconds). */
#define MSI_LOST_MS 2000

struct msi_dev;

struct msi_ops {
	/* Raise LPI k once: 1 raised, 0 not mapped by the guest yet, -errno. */
	int (*raise)(struct msi_dev *m, unsigned k);
};

struct msi_dev {
	struct mig_device core;
	const struct msi_ops *ops;
	void *arg;
	unsigned nr;
	uint64_t *raised;             /* guest RAM: its count of each LPI */
	const uint64_t *delivered;    /* guest RAM: the guest's */
	uint64_t raised_pfn;          /* raised[]'s first page, from RAM's base */
	uint64_t rate;                /* raises a second while running; 0: none */
	pthread_t thread;
	bool thread_started, quit;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool dirty;                   /* raised[] written since the last dirty sync */
	uint64_t since_ms[MSI_LPIS_MAX];  /* when each became outstanding */
	uint64_t raises, at_switchover;
};

extern const struct mig_device_class msi_class;

int msi_dev_init(struct msi_dev *m, unsigned nr, uint64_t *raised, const uint64_t *delivered,
		 uint64_t raised_pfn, uint64_t rate, const struct msi_ops *ops, void *arg,
		 struct mig_error *err);
void msi_dev_fini(struct msi_dev *m);
/* LPIs delivered more often than raised, and LPIs outstanding longer than
 * MSI_LOST_MS while it runs: errors the guest's self-check counts. */
uint64_t msi_dev_errors(struct msi_dev *m);

#endif
