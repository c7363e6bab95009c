/* SPDX-License-Identifier: MIT */
/*
 * The AMD SEV class (KERNEL-UAPI §5, docs/devices.md §12): one device per
 * SEV guest, standing for its firmware context.  It keeps what the VMM
 * must know of the guest and KVM does not:
 *
 * - the migration gate, MSR_KVM_MIGRATION_CONTROL (0x4b564d08), which KVM
 *   does not implement: the VMM traps the guest's accesses (an MSR filter)
 *   and holds the value.  A guest that has not set KVM_MIGRATION_READY is
 *   not migrated; one that clears it during a migration rolls it back;
 * - the page-encryption map, from the guest's KVM_HC_MAP_GPA_RANGE
 *   hypercalls (or the lab guest's doorbell with the same arguments where
 *   the hypercall does not exit): an encrypted page goes through the
 *   firmware (SEND_UPDATE_DATA / RECEIVE_UPDATE_DATA, the class's page
 *   hooks), a shared one in clear, and a page whose status changes is
 *   marked dirty, so that it is sent again in its new form.
 *
 * The firmware itself is a backend (struct sev_fw_ops): `kernel`
 * (KVM_MEMORY_ENCRYPT_OP) or `psp-sim` (psp-sim.c, the SEV API's guest
 * states and status codes, with real AEAD transport encryption).
 */
#ifndef DEVICES_SEV_H
#define DEVICES_SEV_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <migrate/buf.h>
#include <migrate/device.h>

/* The guest-visible contract (KERNEL-UAPI §5.1). */
#define SEV_MSR_MIGRATION_CONTROL 0x4b564d08U
#define SEV_MIGRATION_READY       (1ULL << 0)
#define SEV_HC_MAP_GPA_RANGE      12U
#define SEV_MAP_ENCRYPTED         0x10ULL       /* attribute bit 4 */
#define SEV_MAP_PAGE_SZ_MASK      0xfULL        /* bits 3:0, 0..2 */
#define SEV_CPUID_HC_MAP_GPA_RANGE (1U << 16)   /* KVM_CPUID_FEATURES EAX */
#define SEV_CPUID_MIGRATION_CONTROL (1U << 17)
#define SEV_KVM_EINVAL            22ULL         /* hypercall returns -KVM_EINVAL */

/* SEV guest policy bits (AMD SEV API). */
#define SEV_POLICY_NODBG   (1U << 0)
#define SEV_POLICY_NOKS    (1U << 1)
#define SEV_POLICY_ES      (1U << 2)
#define SEV_POLICY_NOSEND  (1U << 3)

/* The firmware's guest states, as GUEST_STATUS reports them (KERNEL-UAPI
 * §5.3), and SENT, the SEV API's state after SEND_FINISH. */
enum sev_fw_state {
	SEV_FW_INVALID = 0,      /* no context (UNINIT) */
	SEV_FW_LAUNCHING = 1,
	SEV_FW_SECRET = 2,
	SEV_FW_RUNNING = 3,
	SEV_FW_RECEIVING = 4,
	SEV_FW_SENDING = 5,
	SEV_FW_SENT = 6,
};
const char *sev_fw_state_name(unsigned s);
/* A firmware status code's name (SEV_RET_*, <linux/psp-sev.h>). */
const char *sev_fw_status_name(uint32_t code);

/* A transport packet's header: the SEV API's 52 bytes (flags, IV, MAC).
 * It travels as the page's tag (MIG_PAGE_TAG_SIZE). */
#define SEV_PACKET_HDR 52U

struct sev_fw;

/*
 * One firmware, one guest context.  Each command returns 0, or -errno
 * with *fw_status the firmware's code where the firmware refused
 * (SEV_RET_*; 0 when the failure was not the firmware's) and err saying
 * which command failed and why.  The page commands are called from
 * several threads at once.
 */
struct sev_fw_ops {
	const char *name;
	/* Is there an SEV firmware for this VM at all?  The kernel backend
	 * probes KVM_MEMORY_ENCRYPT_OP with a NULL argument. */
	int (*probe)(struct sev_fw *fw, struct mig_error *err);
	/* Launch a guest context with `policy` (LAUNCH_START .. LAUNCH_FINISH:
	 * RUNNING). */
	int (*launch)(struct sev_fw *fw, uint32_t policy, uint32_t *fw_status,
		      struct mig_error *err);
	/* This platform's Diffie-Hellman key (its PDH) for the peer. */
	int (*pdh)(struct sev_fw *fw, struct mig_buf *out, struct mig_error *err);
	/* SEND_START to the platform whose PDH this is: the session blob. */
	int (*send_start)(struct sev_fw *fw, const void *pdh, size_t pdh_len,
			  struct mig_buf *session, uint32_t *fw_status, struct mig_error *err);
	/* SEND_UPDATE_DATA: the page at `gpa`, read from `guest`, encrypted
	 * into trans (4096 bytes) with its packet header. */
	int (*send_update)(struct sev_fw *fw, uint64_t gpa, const void *guest, void *trans,
			   uint8_t hdr[SEV_PACKET_HDR], uint32_t *fw_status, struct mig_error *err);
	int (*send_finish)(struct sev_fw *fw, uint32_t *fw_status, struct mig_error *err);
	int (*send_cancel)(struct sev_fw *fw, uint32_t *fw_status, struct mig_error *err);
	/* RECEIVE_START with the source's PDH and session blob. */
	int (*receive_start)(struct sev_fw *fw, uint32_t policy, const void *pdh, size_t pdh_len,
			     const void *session, size_t session_len, uint32_t *fw_status,
			     struct mig_error *err);
	/* RECEIVE_UPDATE_DATA: the packet into the page at `gpa` (`guest`,
	 * which may be where `trans` is). */
	int (*receive_update)(struct sev_fw *fw, uint64_t gpa, const uint8_t hdr[SEV_PACKET_HDR],
			      const void *trans, void *guest, uint32_t *fw_status,
			      struct mig_error *err);
	int (*receive_finish)(struct sev_fw *fw, uint32_t *fw_status, struct mig_error *err);
	/* GUEST_STATUS: the firmware's state of the context. */
	int (*status)(struct sev_fw *fw, unsigned *state, struct mig_error *err);
	void (*destroy)(struct sev_fw *fw);
};

struct sev_fw {
	const struct sev_fw_ops *ops;
	int vm_fd;
};

/* The backends: psp-sim (psp-sim.c) and kernel (kernel.c). */
int sev_fw_sim_create(struct sev_fw **ret, struct mig_error *err);
int sev_fw_kernel_create(int vm_fd, struct sev_fw **ret, struct mig_error *err);

/*
 * The class's states (docs/devices.md §12):
 *   RUNNING    a guest context the guest runs with (firmware RUNNING)
 *   SENDING    source: SEND_START done; pages go out through the firmware
 *   FINISHED   source: SEND_FINISH; the context is gone, for good
 *   CREATED    destination: a VM waiting for the source's session
 *   RECEIVING  destination: RECEIVE_START done; pages come in through it
 *   RECEIVED   destination: RECEIVE_FINISH; the context may run
 *   FAILED     destination: the state or a page was refused
 *   DEAD       given up
 */
enum sev_state {
	SEV_RUNNING,
	SEV_SENDING,
	SEV_FINISHED,
	SEV_CREATED,
	SEV_RECEIVING,
	SEV_RECEIVED,
	SEV_FAILED,
	SEV_DEAD,
	SEV_ST_N
};

extern const struct mig_device_class sev_class;

struct sev_dev {
	struct mig_device core;
	struct sev_fw *fw;
	uint32_t policy;
	uint8_t *ram;                 /* guest RAM from its first page */
	uint64_t nr_pages;
	uint64_t base_gpa;
	/* The guest's view, written by its vCPUs' exits. */
	pthread_mutex_t lock;
	uint64_t msr;                 /* MSR_KVM_MIGRATION_CONTROL */
	uint64_t *enc;                /* 1: encrypted (atomic words) */
	uint64_t *changed;            /* status changed since the last dirty sync */
	bool ready_cleared;           /* READY went 1 -> 0 during a migration */
	bool migrating;
	/* The migration's. */
	struct mig_buf peer_pdh;      /* source: the destination's; destination: the source's */
	struct mig_buf session;       /* source: from SEND_START; destination: for RECEIVE_START */
	bool have_session;
	uint64_t *arrived_enc;        /* destination: the last copy of the page came encrypted */
	/* Counts, for the summary. */
	uint64_t map_calls, map_doorbells, msr_writes, pages_sent_enc, pages_recv_enc;
	uint64_t status_changes;
};

/* The device takes fw (destroyed with it, or here on failure).  RAM is
 * the guest's from GPA base_gpa, nr_pages pages.  `dest`: the
 * device waits for a migration (CREATED); otherwise it launches a guest
 * context with `policy` (RUNNING), every page encrypted until the guest
 * says otherwise. */
int sev_dev_create(struct sev_fw *fw, uint8_t *ram, uint64_t base_gpa, uint64_t nr_pages,
		   uint32_t policy, bool dest, struct sev_dev **ret, struct mig_error *err);
void sev_dev_destroy(struct sev_dev *s);

/* The guest's KVM_HC_MAP_GPA_RANGE(gpa, npages, attrs): 0, or the positive
 * KVM error the guest gets back (SEV_KVM_EINVAL).  `doorbell`: it came by
 * the lab's port instead of the hypercall (counted apart). */
uint64_t sev_map_gpa_range(struct sev_dev *s, uint64_t gpa, uint64_t npages, uint64_t attrs,
			   bool doorbell);
/* The guest's WRMSR/RDMSR of MSR_KVM_MIGRATION_CONTROL: 0, or -EINVAL
 * for bits the MSR does not have (the guest gets #GP). */
int sev_msr_write(struct sev_dev *s, uint64_t value);
uint64_t sev_msr_read(struct sev_dev *s);
bool sev_page_encrypted(const struct sev_dev *s, uint64_t pfn);

#endif

/* ---- the KVM plumbing of KERNEL-UAPI §5.2, for a VMM that hosts one ---- */

struct kvm_run;
/* Before the guest runs: guest accesses of MSR_KVM_MIGRATION_CONTROL exit
 * to userspace (an MSR filter), and, with `hypercall`, so does
 * KVM_HC_MAP_GPA_RANGE (KVM_CAP_EXIT_HYPERCALL).  A host that cannot
 * gets a refusal that says which capability is missing. */
int sev_kvm_enable_exits(int kvm_fd, int vm_fd, bool hypercall, struct mig_error *err);
/* Whether this host's KVM forwards the guest's hypercall to userspace.
 * PVM hosts do not (measured: the guest spins at the instruction), so a
 * lab guest there reports through its doorbell instead. */
bool sev_kvm_hypercall_exits(int kvm_fd);
/* A KVM_EXIT_HYPERCALL or KVM_EXIT_X86_RDMSR/WRMSR exit, answered in run
 * (the next KVM_RUN completes it).  -EPROTO for one this class does not
 * own (another hypercall or MSR: the caller stops the vCPU). */
int sev_kvm_exit(struct sev_dev *s, struct kvm_run *run);
