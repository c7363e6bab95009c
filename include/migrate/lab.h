/* SPDX-License-Identifier: MIT */
/*
 * The lab VM: a guest hosted by this process through /dev/kvm, running a
 * self-checking workload (guest/lab-guest.S) at CPL3 in 64-bit long mode.
 * It is what migrations move and verify.
 */
#ifndef MIGRATE_LAB_H
#define MIGRATE_LAB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <migrate/buf.h>
#include <migrate/device.h>
#include <migrate/error.h>
#include <migrate/vm.h>

enum lab_pattern {
	LAB_PATTERN_SEQ,
	LAB_PATTERN_RANDOM,
	_LAB_PATTERN_MAX,
};

enum lab_dirty_log {
	LAB_DIRTY_LOG_BITMAP,   /* MANUAL_PROTECT2 + INITIALLY_SET, classic GET where missing */
	LAB_DIRTY_LOG_RING,     /* per-vCPU dirty ring */
	_LAB_DIRTY_LOG_MAX,
};

/* Where guest RAM lives: anonymous memory, or a memfd mapped shared, which
 * a same-host hand-over passes to the destination instead of copying it
 * (docs/phases.md, "Same-host hand-over"). */
enum lab_ram { LAB_RAM_ANON, LAB_RAM_MEMFD, _LAB_RAM_MAX };

/* An SEV guest (devices/sev/): its firmware, and how the guest reports
 * its page-encryption changes. */
enum lab_sev { LAB_SEV_OFF, LAB_SEV_SIM, LAB_SEV_KERNEL, _LAB_SEV_MAX };
enum lab_sev_report {
	LAB_SEV_REPORT_AUTO,       /* the hypercall, unless the host does not forward it (PVM) */
	LAB_SEV_REPORT_HYPERCALL,  /* KVM_HC_MAP_GPA_RANGE, exiting to the VMM */
	LAB_SEV_REPORT_DOORBELL,   /* the same arguments through a port */
	_LAB_SEV_REPORT_MAX,
};

struct lab_config {
	uint64_t mem_bytes;     /* guest RAM, multiple of 2 MiB */
	uint32_t vcpus;
	uint64_t wss_bytes;     /* working set written by the vCPUs, <= usable RAM */
	enum lab_pattern pattern;
	uint64_t rate;          /* pages per second over all vCPUs, 0 = max */
	enum lab_dirty_log dirty_log;
	uint64_t seed;          /* fill pattern seed */
	bool force_classic;     /* bitmap mode without MANUAL_PROTECT2 (tests, old kernels) */
	uint32_t ring_entries;  /* dirty ring entries per vCPU, 0 = default */
	/* sim VFIO devices (devices/vfio/sim.h), each DMA-writing its own
	 * LAB_VFIO_DMA_BYTES at the top of guest RAM, outside every vCPU's share */
	uint32_t vfio;
	uint32_t vfio_v1;       /* of them, the last this many speak protocol v1 */
	uint32_t vfio_flags;    /* VFIO_MIGRATION_* the v2 ones declare (default 7: all) */
	uint64_t vfio_rate;     /* DMA pages a second, each */
	bool vfio_no_log;       /* they cannot log their DMA */
	/* faults (chaos mode): a source's devices lose their DMA log once, or
	 * produce pre-copy data beyond what they announce */
	bool vfio_lose_log, vfio_overshoot;
	/* a fault for tests: device fail_dev's arc fail_from -> fail_to fails
	 * with fail_err (0: none) where MIG_LAB_FAIL_* says */
	uint8_t vfio_fail_from, vfio_fail_to, vfio_fail_err, vfio_fail_where;
	uint32_t ccw;           /* sim channel I/O subchannels (devices/ccw/) */
	uint32_t msi;           /* MSI devices raising LPIs (arm64: devices/msi/) */
	char mdev[16];          /* a real mdev of this type, each host its own ("": none) */
	enum lab_sev sev;
	enum lab_sev_report sev_report;
	uint32_t sev_ready_ms;  /* the guest sets KVM_MIGRATION_READY this long after boot */
	uint32_t sev_unready_ms;/* and clears it this long after (0: never) */
	uint32_t sev_flip_ms;   /* it flips a range shared/encrypted this often (0: never) */
	enum lab_ram ram;
	bool destination;       /* made by prepare (not on the wire) */
};

#define LAB_VFIO_MAX 8
#define LAB_CCW_MAX 8
#define LAB_MSI_MAX 8
#define LAB_MSI_EVENTS 4        /* LPIs each MSI device raises */
#define LAB_SEV_DEFAULT_READY_MS 100
#define LAB_SEV_DEFAULT_FLIP_MS 20
#define LAB_VFIO_DMA_BYTES (1ULL << 20)
#define LAB_VFIO_OVERSHOOT 65536  /* vfio-overshoot=on: bytes past PRECOPY_INFO */
#define LAB_VFIO_DEFAULT_RATE 2000
/* Guest RAM the vCPUs share: all but the system area and the devices' DMA
 * area (rounded up to 2 MiB, the guest's page size). */
uint64_t lab_config_work_bytes(const struct lab_config *cfg);

#define LAB_DEFAULT_MEM   (1ULL << 30)
#define LAB_DEFAULT_VCPUS 2
#define LAB_DEFAULT_WSS   (64ULL << 20)

void lab_config_default(struct lab_config *cfg);
/* Checks ranges and relations (wss <= usable RAM, vcpus >= 1, ...). */
int lab_config_check(const struct lab_config *cfg, struct mig_error *err);
/* "mem=SIZE,vcpus=N,wss=SIZE[,pattern=seq|random][,rate=max|N][,dirty-log=bitmap|ring]";
 * keys not given keep the values already in cfg. */
int lab_spec_parse(const char *spec, struct lab_config *cfg, struct mig_error *err);
/* SPEC (NULL: the defaults) parsed and checked, and what it would make: the
 * "lab" backend's check_spec(), in every build, with or without the VM. */
int lab_spec_check(const char *spec, struct mig_vm_summary *ret, struct mig_error *err);

const char *lab_pattern_to_string(enum lab_pattern p);
int lab_pattern_from_string(const char *s);          /* enum value or -EINVAL */
const char *lab_dirty_log_to_string(enum lab_dirty_log d);
int lab_dirty_log_from_string(const char *s);
const char *lab_ram_to_string(enum lab_ram r);
int lab_ram_from_string(const char *s);

/* The lab VM's description on the wire (VM_LIST, MIG_INCOMING, SETUP). */
struct mig_lab_wire;
void lab_to_wire(const struct lab_config *c, struct mig_lab_wire *w);
int lab_from_wire(const struct mig_lab_wire *w, struct lab_config *c, struct mig_error *err);



/* ---- the running lab VM ---- */

struct lab_vm;

#define LAB_MAX_VCPUS 64
#define LAB_SYSTEM_BYTES (2ULL << 20)   /* page tables, code and the table */

struct lab_vcpu_stats {
	uint64_t state;        /* LAB_STATE_* reported by the guest */
	uint64_t filled;       /* pages filled */
	uint64_t passes;       /* passes over its working set */
	uint64_t pages;        /* pages stamped */
	uint64_t errors;       /* self-check mismatches counted by the guest */
};

struct lab_stats {
	uint32_t nr_vcpus;
	uint64_t passes;       /* sums over the vCPUs */
	uint64_t pages;
	uint64_t filled;
	uint64_t errors;
	uint64_t error_reports; /* mismatches the guest reported through port I/O here */
	bool all_filled;       /* every vCPU finished filling its share */
	int fatal;             /* -errno: a vCPU stopped on an unexpected exit */
	char fatal_msg[192];
	uint64_t ring_full_exits;
	struct lab_vcpu_stats vcpu[LAB_MAX_VCPUS];
};


/* Creates the VM, its memory (pre-faulted, in logging memslots) and its vCPUs;
 * nothing runs yet.  Fails with a clear error if /dev/kvm or a needed
 * capability is missing. */
int lab_vm_create(const struct lab_config *cfg, struct lab_vm **ret, struct mig_error *err);
void lab_vm_destroy(struct lab_vm *vm);
const struct lab_config *lab_vm_config(const struct lab_vm *vm);
/* The VM as the engines see it (the lab backend's struct mig_vm), and back:
 * NULL when it is not a lab VM. */
struct mig_vm *lab_vm_mig(struct lab_vm *vm);
struct lab_vm *lab_vm_from_mig(struct mig_vm *vm);
/* True when every vCPU is in the KVM_RUN loop. */
bool lab_vm_is_running(struct lab_vm *vm);
/* Fresh boot: writes page tables, the payload and the table, starts every vCPU. */
int lab_vm_start(struct lab_vm *vm, struct mig_error *err);
/* Every vCPU out of KVM_RUN with its pending I/O completed (QUIESCED). */
int lab_vm_pause(struct lab_vm *vm, struct mig_error *err);
/* From paused or saved (a rollback walk) or loaded (a start walk): it runs. */
int lab_vm_resume(struct lab_vm *vm, struct mig_error *err);
/* Paused VM: the SAVE walk, then every device's state in one container
 * (mig_vm_state_save()). */
int lab_vm_save_state(struct lab_vm *vm, struct mig_buf *out, struct mig_error *err);
/* A VM that never ran, RAM already in place: check the whole container,
 * then load every device (mig_vm_state_load()). */
int lab_vm_load_state(struct lab_vm *vm, const uint8_t *p, size_t n, struct mig_error *err);

uint8_t *lab_vm_ram(struct lab_vm *vm, uint64_t *ret_bytes);
/* Dirty log: OR pages dirtied since the last sync into bitmap
 * (lab_vm_bitmap_words() words, bit n = guest page n). */
int lab_vm_dirty_sync(struct lab_vm *vm, uint64_t *bitmap, uint64_t *ret_count,
		      struct mig_error *err);
uint64_t lab_vm_bitmap_words(const struct lab_vm *vm);
const char *lab_vm_dirty_log_mode(const struct lab_vm *vm);  /* "bitmap-manual", ... */
/* With the dirty ring: "N/M" per vCPU, entries harvested in all and by the
 * last sync (for error messages); otherwise an empty string. */
void lab_vm_ring_report(struct lab_vm *vm, char *out, size_t n);
void lab_vm_stats(struct lab_vm *vm, struct lab_stats *ret);
int lab_vm_digest(struct lab_vm *vm, struct mig_digest *ret);
/* The same, given up with -ECANCELED once *stop is set (checked per 2 MiB). */
int lab_vm_digest_until(struct lab_vm *vm, const atomic_bool *stop, struct mig_digest *ret);

#endif
