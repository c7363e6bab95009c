/* SPDX-License-Identifier: MIT */
/*
 * The VFIO device class (KERNEL-UAPI.md §1): one passthrough device under
 * the migration uAPI v2.  Its states are the kernel's own
 * (enum vfio_device_mig_state, numbered as there), so a class arc is one
 * VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE SET, and the walker asks the kernel
 * for nothing it would have to break into steps itself.
 */
#ifndef DEVICES_VFIO_H
#define DEVICES_VFIO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <migrate/device.h>

enum vfio_state {
	VFIO_ST_ERROR = 0,        /* a failed arc left nothing valid; only RESET leaves it */
	VFIO_ST_STOP = 1,         /* frozen: no DMA, no interrupts */
	VFIO_ST_RUNNING = 2,
	VFIO_ST_STOP_COPY = 3,    /* stopped, final state streams out (to EOF) */
	VFIO_ST_RESUMING = 4,     /* stopped, a state stream goes in */
	VFIO_ST_RUNNING_P2P = 5,  /* running, starts no peer-to-peer DMA (P2P) */
	VFIO_ST_PRE_COPY = 6,     /* running, state streams out as it changes (PRE_COPY) */
	VFIO_ST_PRE_COPY_P2P = 7, /* both (P2P and PRE_COPY) */
	VFIO_ST_N
};

/* The device's migration flags (VFIO_DEVICE_FEATURE_MIGRATION). */
#define VFIO_F_STOP_COPY (1U << 0)
#define VFIO_F_P2P       (1U << 1)
#define VFIO_F_PRE_COPY  (1U << 2)
#define VFIO_F_KNOWN     (VFIO_F_STOP_COPY | VFIO_F_P2P | VFIO_F_PRE_COPY)

/* What a run reports of a device (struct mig_device's notes). */
#define VFIO_NOTE_NO_P2P    (1U << 0)   /* its P2P arcs were skipped */
#define VFIO_NOTE_NO_LOG    (1U << 1)   /* no DMA log: all it reaches went again */

/* The kernel's rules (drivers/vfio/vfio_main.c), for a device with `flags`:
 * whether the state exists for it; whether `from -> to` is one arc its
 * driver carries out; and the first step on the way from `from` to `to`,
 * as vfio_mig_get_next_state() chooses it (shortest, never leaving the
 * saving group only to enter it again, skipping states the device lacks),
 * or -EINVAL where the kernel refuses.  STOP_COPY -> PRE_COPY(_P2P) is
 * refused here too: kernels before the skip-loop fix spin on it. */
bool vfio_state_exists(uint32_t flags, int state);
bool vfio_arc_direct(uint32_t flags, int from, int to);
int vfio_next_step(uint32_t flags, int from, int to);
/* Whether entering `to` from `from` opens a new data session (a new data
 * fd): STOP -> STOP_COPY, RUNNING -> PRE_COPY, RUNNING_P2P -> PRE_COPY_P2P,
 * STOP -> RESUMING.  Moves inside the saving group keep the session. */
bool vfio_arc_opens_session(int from, int to);
/* The saving group: PRE_COPY, PRE_COPY_P2P, STOP_COPY. */
bool vfio_state_saving(int state);
const char *vfio_state_name(int state);
extern const char *const vfio_state_names[VFIO_ST_N];


/* ---- the class: one VFIO device ---- */

struct vfio_device_feature;
struct vfio_precopy_info;
struct vfio_dev;

/*
 * Where a device lives: `kernel` (ioctls on a real VFIO device fd) or `sim`
 * (a device in this process that keeps the kernel's contract arc for arc
 * and errno for errno).  Every call returns what the kernel's would: 0 or
 * a byte count, else -errno.
 */
struct vfio_backend {
	const char *name;
	/* VFIO_DEVICE_FEATURE on the device, f->argsz bytes at f.  A SET of
	 * MIG_DEVICE_STATE that opens a data session fills its data_fd. */
	int (*feature)(struct vfio_dev *v, struct vfio_device_feature *f);
	/* The data session: read() (0 at the end of a STOP_COPY stream,
	 * -ENOMSG when a PRE_COPY stream has nothing for now), write(),
	 * VFIO_MIG_GET_PRECOPY_INFO, close(). */
	ssize_t (*data_read)(struct vfio_dev *v, int fd, void *buf, size_t n);
	ssize_t (*data_write)(struct vfio_dev *v, int fd, const void *buf, size_t n);
	int (*precopy_info)(struct vfio_dev *v, int fd, struct vfio_precopy_info *info);
	void (*data_close)(struct vfio_dev *v, int fd);
	/* VFIO_DEVICE_RESET: back to RUNNING, the device's state lost. */
	int (*reset)(struct vfio_dev *v);
};

/* What the destination's device must match (compat ops). */
#define VFIO_DESC_REGIONS 9       /* the PCI BARs 0-5, ROM, config, VGA */
#define VFIO_REGION_PREFETCH 1U   /* a prefetchable BAR */
#define VFIO_REGION_WC 2U         /* mapped write-combining */
struct vfio_desc {
	uint32_t flags;           /* VFIO_F_* */
	uint16_t vendor, device, subvendor, subdevice;
	char mdev_type[32];       /* "" for a PCI function */
	uint32_t nr_regions;
	uint32_t pad;
	struct vfio_desc_region {
		uint64_t size;
		uint32_t flags;       /* VFIO_REGION_INFO_FLAG_* */
		uint32_t attrs;       /* VFIO_REGION_PREFETCH, VFIO_REGION_WC */
	} regions[VFIO_DESC_REGIONS];
};
_Static_assert(sizeof(struct vfio_desc) == 56 + 16 * VFIO_DESC_REGIONS, "vfio_desc");

/* A guest RAM range the device can reach by DMA (IOVA = guest physical). */
struct vfio_range {
	uint64_t iova, length;
};
#define VFIO_RANGES_MAX 8

struct vfio_dev {
	struct mig_device dev;
	const struct vfio_backend *be;
	void *be_data;
	struct vfio_desc desc;    /* flags come from VFIO_DEVICE_FEATURE_MIGRATION */
	char label[64];           /* for messages: the mdev uuid or the PCI address */
	int data_fd;              /* the open data session, -1: none */
	/* DMA dirty tracking over what it can reach */
	struct vfio_range ranges[VFIO_RANGES_MAX];
	unsigned nr_ranges;
	uint64_t log_page;        /* the granularity the device chose */
	bool logging;             /* DMA_LOGGING_START took */
	bool no_log;              /* it cannot log: all it reaches goes at the end */
	uint64_t *report;         /* a REPORT's bitmap */
	uint64_t report_words;
	uint8_t *buf;             /* the data session's bytes on their way (CHUNK) */
	/* what the run saw, for the summary */
	uint64_t precopy_bytes, final_bytes;
};

extern const struct mig_device_class vfio_class;

/* Set up v (not yet in a VM): asks the device for its migration flags
 * (a device without migration support is refused, naming it). */
int vfio_dev_init(struct vfio_dev *v, unsigned id, const struct vfio_backend *be, void *be_data,
		  const char *label, struct mig_error *err);
void vfio_dev_fini(struct vfio_dev *v);

#endif
