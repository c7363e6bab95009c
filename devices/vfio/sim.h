/* SPDX-License-Identifier: MIT */
/*
 * The VFIO class's `sim` backend: a device in this process that keeps the
 * kernel's contract (KERNEL-UAPI.md §1) arc for arc and errno for errno,
 * the core's checks of VFIO_DEVICE_FEATURE included, and does real work:
 *
 *   - it DMA-writes guest RAM at a set rate while it runs, pages that only
 *     its DMA log reports (KVM's dirty log never sees a device's writes);
 *   - it keeps internal state that changes while it runs (a table, and a
 *     count of its operations) and migrates it in PRE_COPY and STOP_COPY
 *     data;
 *   - after a resume it checks itself: its table against the digest its
 *     source sent, and the guest pages it wrote last against what it
 *     wrote, counting errors as the lab guest does.
 *
 * It can be told to fail a given arc with a given errno, to lose its DMA
 * log once, and to produce more pre-copy data than it announced.
 */
#ifndef DEVICES_VFIO_SIM_H
#define DEVICES_VFIO_SIM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vfio.h"

struct vfio_sim_opts {
	uint32_t flags;           /* VFIO_F_* it declares */
	uint32_t table_bytes;     /* its internal table (the bulk of PRE_COPY data) */
	bool no_log;              /* DMA logging not supported (ENOTTY, as without log_ops) */
	uint8_t *ram;             /* guest RAM it writes by DMA (NULL: none) */
	struct vfio_range dma;    /* where in it, page aligned */
	uint64_t dma_rate;        /* pages a second while it runs; 0: none */
	uint32_t seed;
	/* faults */
	int fail_from, fail_to;   /* this arc fails (-1: none) ... */
	int fail_errno;           /* ... with this errno, leaving the device in fail_at */
	int fail_at;              /* where a failed arc leaves it: from, or ERROR */
	bool lose_log;            /* the next REPORT fails with EIO */
	uint32_t overshoot;       /* PRE_COPY: this many bytes beyond what PRECOPY_INFO said */
};

struct vfio_sim {
	struct vfio_sim_opts o;
	pthread_mutex_t lock;
	int state;
	/* the device's own state */
	uint8_t *table;
	uint64_t ops;             /* operations it carried out */
	uint64_t dma_seq;         /* DMA writes so far */
	uint64_t last_page;       /* the page the last DMA write went to (in dma) */
	uint64_t *table_dirty;    /* table chunks changed since the stream took them */
	/* the DMA log */
	bool logging;
	uint64_t *log;            /* a bit per page of o.dma */
	/* the open data session */
	int fd;                   /* its number, -1: none */
	int next_fd;
	bool save;                /* a saving session (else resuming) */
	uint8_t *out;             /* saving: the record ready to be read (a header and a chunk) */
	uint64_t out_len, out_pos;
	bool initial_done;        /* the whole table went once */
	uint64_t initial_left;    /* PRECOPY_INFO's initial_bytes */
	bool final_queued;        /* STOP_COPY: the closing record is out */
	uint8_t *scratch;         /* a resume's table, checked before it is taken */
	uint8_t *in;              /* resuming: a record cut by the end of a write */
	uint64_t in_len;
	int resume_err;           /* the first fault in what was written */
	bool have_final;
	struct vfio_sim_final {
		uint64_t ops, dma_seq, last_page, digest;
	} final;                  /* its closing record */
	/* the DMA thread: it writes only once the device is armed (a source's
	 * at its VM's start, a destination's by a resume) and running */
	pthread_t thread;
	bool thread_on, quit, armed;
	pthread_cond_t wake;
	/* its self-check after a resume */
	uint64_t errors;
	char error_msg[160];
};

extern const struct vfio_backend vfio_sim_backend;

int vfio_sim_init(struct vfio_sim *s, const struct vfio_sim_opts *o, struct mig_error *err);
void vfio_sim_fini(struct vfio_sim *s);
/* Start or stop its DMA thread (it writes only in a running state, once
 * armed: vfio_sim_arm(), or a resume, which also runs its self-check). */
int vfio_sim_start_dma(struct vfio_sim *s);
void vfio_sim_arm(struct vfio_sim *s);
void vfio_sim_stop_dma(struct vfio_sim *s);
/* One operation by hand: a table change and, with RAM, a DMA write (the
 * thread does these at o.dma_rate).  -EBUSY when the device is stopped. */
int vfio_sim_tick(struct vfio_sim *s);
/* Its self-check: 0, or the number of errors found (error_msg says the first). */
uint64_t vfio_sim_check(struct vfio_sim *s);

/*
 * The v1 flavour (sim-v1.c): the same device behind the 2020 protocol's
 * migration region, and a backend that carries the class's requests out on
 * that region, so a v1 device migrates next to v2 ones.
 */
struct vfio_sim_v1 {
	struct vfio_sim sim;      /* the device behind the region */
	struct vfio_dev inner_dev;/* how the region reaches it */
	int inner_fd;
	uint32_t device_state;    /* the region's first field */
	uint8_t *area;            /* its data area */
	uint64_t chunk;           /* the saving iteration's bytes in the area */
	uint64_t taken;           /* of them, read by the backend */
	bool iteration;
	int fd, sessions;         /* the backend's data fd for the class */
};

extern const struct vfio_backend vfio_sim_v1_backend;

int vfio_sim_v1_init(struct vfio_sim_v1 *s, const struct vfio_sim_opts *o, struct mig_error *err);
void vfio_sim_v1_fini(struct vfio_sim_v1 *s);
/* The migration region as the v1 uAPI defines it: 0 or -errno. */
int vfio_sim_v1_region_read(struct vfio_sim_v1 *s, uint64_t off, void *buf, size_t n);
int vfio_sim_v1_region_write(struct vfio_sim_v1 *s, uint64_t off, const void *buf, size_t n);

#endif
