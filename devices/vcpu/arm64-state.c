// SPDX-License-Identifier: MIT
/*
 * arm64 vCPU state: save, validate, load (format in arm64-state.h).
 *
 * Save takes the kernel's own list (KVM_GET_REG_LIST) instead of one of ours,
 * so a register a newer kernel adds travels without a change here; sorted by
 * id, so a duplicate is easy to refuse and two blobs compare byte for byte.
 *
 * Load writes in an order, not in the list's:
 *  1. firmware pseudo-registers (KVM_REG_ARM_FW: PSCI version, SMCCC
 *     workaround levels; KVM_REG_ARM_FW_FEAT_BMAP: the hypercall services).
 *     They choose what the guest's firmware interface offers; the kernel
 *     takes the bitmaps only before the VM first runs (EBUSY after) and
 *     refuses a workaround level this host cannot honour (EINVAL);
 *  2. CCSIDR (KVM_REG_ARM_DEMUX), then the system registers in id order,
 *     which puts the ID registers (op0 3, op1 0, CRn 0) first: they decide
 *     which other registers and fields the vCPU has.  The kernel takes an ID
 *     register only at a value this host supports (EINVAL) and only before
 *     the VM first runs (EBUSY after); MIDR, REVIDR, AIDR, CTR_EL0 and
 *     OSLSR_EL1 only at the value they have.  Kernels before 6.3 took CCSIDR
 *     only at the host's cache geometry;
 *  3. the core registers (general purpose, SP, PC, PSTATE, the EL1 banked
 *     ones, FP/SIMD);
 *  4. each timer as KVM_REG_ARM_TIMER_CNT (or PTIMER_CNT), then CVAL, then
 *     CTL.  CNT is no register: writing it sets the VM's counter offset
 *     (phys - value), the time base against which CVAL is compared.  The
 *     base first, then the deadline in it, then ENABLE: the timer is never
 *     armed against the destination's fresh base, where an old CVAL would
 *     look long expired (or far away).  The final values are the same in
 *     any order; the order counts for whatever evaluates the timer between
 *     two writes (KVM recomputes its output when the vCPU next runs).  The
 *     offset is VM-wide since Linux
 *     6.4 (it was kept in step on every vCPU before), so the last vCPU loaded
 *     sets it for all: see arm64_vcpu_state_counters();
 *  5. pending events (KVM_SET_VCPU_EVENTS: a pending SError and its ESR);
 *  6. the MP state (runnable, stopped by PSCI, suspended).
 *
 * A register whose destination value already equals the blob's is not
 * written: on a fresh vCPU of the same host that is most of them (219 of 259
 * on Linux 6.12), and it keeps an unchanged invariant register from ever
 * reaching a kernel that refuses writes to it.  Where the values differ the
 * SET runs and the kernel's refusal is the error: a destination that cannot
 * give the vCPU what it had is no place to migrate it.  Nothing is skipped
 * by class.  The ICC_* registers of the GIC CPU interface are not in the
 * list: they belong to the vGIC device (KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS)
 * and travel with it.
 */
#ifndef __aarch64__
#error "arm64-state.c reads arm64 KVM registers: build it for aarch64"
#endif

#include "vcpu/arm64-state.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include <linux/kvm.h>

#include "util.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	       "values are stored as KVM returns them, in little-endian order");

#define STATE_MAGIC "MIGA64ST"
#define STATE_VERSION 1u
/* Far above any kernel's list (about 500 with SVE, 250 without). */
#define MAX_REGS 8192u
/* KVM_REG_SIZE_U2048: an SVE Z register slice. */
#define MAX_REG_BYTES 256u
#define RECORD_ALIGN 8u
/* ESR_ELx.ISS: the syndrome an injected SError may carry (arm64 esr.h). */
#define ESR_ISS_MASK 0x1ffffffULL

struct state_header {
	uint8_t magic[8];
	uint32_t version;
	uint32_t nr_regs;
	uint32_t mp_state;
	uint32_t flags;
	uint64_t total_len;
};
_Static_assert(sizeof(struct state_header) == 32, "header is 32 bytes on the wire");
_Static_assert(sizeof(struct kvm_vcpu_events) == 64, "VCPU_EVENTS is 64 bytes on the wire");
_Static_assert(sizeof(struct kvm_mp_state) == 4, "MP_STATE");

static unsigned reg_bytes(uint64_t id)
{
	return 1U << ((id & KVM_REG_SIZE_MASK) >> KVM_REG_SIZE_SHIFT);
}

static uint64_t coproc(uint64_t id)
{
	return id & KVM_REG_ARM_COPROC_MASK;
}

#define CORE(field) ((unsigned)KVM_REG_ARM_CORE_REG(field))

const char *arm64_reg_name(uint64_t id, char *buf, size_t n)
{
	static const struct {
		uint64_t id;
		const char *name;
	} sysregs[] = {
		{ ARM64_SYS_REG(2, 0, 1, 1, 4), "OSLSR_EL1" },
		{ ARM64_SYS_REG(3, 0, 0, 0, 0), "MIDR_EL1" },
		{ ARM64_SYS_REG(3, 0, 0, 0, 5), "MPIDR_EL1" },
		{ ARM64_SYS_REG(3, 0, 0, 0, 6), "REVIDR_EL1" },
		{ ARM64_SYS_REG(3, 0, 0, 4, 0), "ID_AA64PFR0_EL1" },
		{ ARM64_SYS_REG(3, 0, 0, 4, 1), "ID_AA64PFR1_EL1" },
		{ ARM64_SYS_REG(3, 0, 0, 4, 4), "ID_AA64ZFR0_EL1" },
		{ ARM64_SYS_REG(3, 0, 0, 5, 0), "ID_AA64DFR0_EL1" },
		{ ARM64_SYS_REG(3, 0, 0, 5, 1), "ID_AA64DFR1_EL1" },
		{ ARM64_SYS_REG(3, 0, 0, 6, 0), "ID_AA64ISAR0_EL1" },
		{ ARM64_SYS_REG(3, 0, 0, 6, 1), "ID_AA64ISAR1_EL1" },
		{ ARM64_SYS_REG(3, 0, 0, 6, 2), "ID_AA64ISAR2_EL1" },
		{ ARM64_SYS_REG(3, 0, 0, 7, 0), "ID_AA64MMFR0_EL1" },
		{ ARM64_SYS_REG(3, 0, 0, 7, 1), "ID_AA64MMFR1_EL1" },
		{ ARM64_SYS_REG(3, 0, 0, 7, 2), "ID_AA64MMFR2_EL1" },
		{ ARM64_SYS_REG(3, 1, 0, 0, 1), "CLIDR_EL1" },
		{ ARM64_SYS_REG(3, 1, 0, 0, 7), "AIDR_EL1" },
		{ ARM64_SYS_REG(3, 3, 0, 0, 1), "CTR_EL0" },
		{ ARM64_SYS_REG(3, 0, 1, 0, 0), "SCTLR_EL1" },
		{ ARM64_SYS_REG(3, 0, 1, 0, 2), "CPACR_EL1" },
		{ ARM64_SYS_REG(3, 0, 2, 0, 0), "TTBR0_EL1" },
		{ ARM64_SYS_REG(3, 0, 2, 0, 1), "TTBR1_EL1" },
		{ ARM64_SYS_REG(3, 0, 2, 0, 2), "TCR_EL1" },
		{ ARM64_SYS_REG(3, 0, 5, 2, 0), "ESR_EL1" },
		{ ARM64_SYS_REG(3, 0, 6, 0, 0), "FAR_EL1" },
		{ ARM64_SYS_REG(3, 0, 7, 4, 0), "PAR_EL1" },
		{ ARM64_SYS_REG(3, 0, 10, 2, 0), "MAIR_EL1" },
		{ ARM64_SYS_REG(3, 0, 12, 0, 0), "VBAR_EL1" },
		{ ARM64_SYS_REG(3, 0, 13, 0, 1), "CONTEXTIDR_EL1" },
		{ ARM64_SYS_REG(3, 0, 13, 0, 4), "TPIDR_EL1" },
		{ ARM64_SYS_REG(3, 0, 14, 1, 0), "CNTKCTL_EL1" },
		{ ARM64_SYS_REG(3, 3, 13, 0, 2), "TPIDR_EL0" },
		{ ARM64_SYS_REG(3, 3, 13, 0, 3), "TPIDRRO_EL0" },
		{ KVM_REG_ARM_TIMER_CTL, "CNTV_CTL_EL0" },
		{ KVM_REG_ARM_TIMER_CVAL, "CNTV_CVAL_EL0" },
		{ KVM_REG_ARM_TIMER_CNT, "CNTVCT_EL0 (timer CNT)" },
		{ KVM_REG_ARM_PTIMER_CTL, "CNTP_CTL_EL0" },
		{ KVM_REG_ARM_PTIMER_CVAL, "CNTP_CVAL_EL0" },
		{ KVM_REG_ARM_PTIMER_CNT, "CNTPCT_EL0 (ptimer CNT)" },
	};
	unsigned idx = (unsigned)(id & 0xffff);

	if ((id & KVM_REG_ARCH_MASK) != KVM_REG_ARM64) {
		snprintf(buf, n, "%#llx", (unsigned long long)id);
		return buf;
	}
	switch (coproc(id)) {
	case KVM_REG_ARM_CORE:
		if (idx < CORE(regs.sp))
			snprintf(buf, n, "x%u", idx / 2);
		else if (idx == CORE(regs.sp))
			snprintf(buf, n, "SP_EL0");
		else if (idx == CORE(regs.pc))
			snprintf(buf, n, "PC");
		else if (idx == CORE(regs.pstate))
			snprintf(buf, n, "PSTATE");
		else if (idx == CORE(sp_el1))
			snprintf(buf, n, "SP_EL1");
		else if (idx == CORE(elr_el1))
			snprintf(buf, n, "ELR_EL1");
		else if (idx >= CORE(spsr[0]) && idx < CORE(fp_regs))
			snprintf(buf, n, "SPSR[%u]", (idx - CORE(spsr[0])) / 2);
		else if (idx >= CORE(fp_regs.vregs[0]) && idx < CORE(fp_regs.fpsr))
			snprintf(buf, n, "V%u", (idx - CORE(fp_regs.vregs[0])) / 4);
		else if (idx == CORE(fp_regs.fpsr))
			snprintf(buf, n, "FPSR");
		else if (idx == CORE(fp_regs.fpcr))
			snprintf(buf, n, "FPCR");
		else
			snprintf(buf, n, "core %#x", idx);
		return buf;
	case KVM_REG_ARM64_SYSREG:
		for (size_t i = 0; i < ARRAY_SIZE(sysregs); i++)
			if (sysregs[i].id == id) {
				snprintf(buf, n, "%s", sysregs[i].name);
				return buf;
			}
		snprintf(buf, n, "S%u_%u_C%u_C%u_%u",
			 (unsigned)((id & KVM_REG_ARM64_SYSREG_OP0_MASK) >> KVM_REG_ARM64_SYSREG_OP0_SHIFT),
			 (unsigned)((id & KVM_REG_ARM64_SYSREG_OP1_MASK) >> KVM_REG_ARM64_SYSREG_OP1_SHIFT),
			 (unsigned)((id & KVM_REG_ARM64_SYSREG_CRN_MASK) >> KVM_REG_ARM64_SYSREG_CRN_SHIFT),
			 (unsigned)((id & KVM_REG_ARM64_SYSREG_CRM_MASK) >> KVM_REG_ARM64_SYSREG_CRM_SHIFT),
			 (unsigned)((id & KVM_REG_ARM64_SYSREG_OP2_MASK) >> KVM_REG_ARM64_SYSREG_OP2_SHIFT));
		return buf;
	case KVM_REG_ARM_DEMUX:
		snprintf(buf, n, "CCSIDR %u", (unsigned)(id & KVM_REG_ARM_DEMUX_VAL_MASK));
		return buf;
	case KVM_REG_ARM_FW:
		if (idx == 0)
			snprintf(buf, n, "PSCI_VERSION");
		else
			snprintf(buf, n, "SMCCC_ARCH_WORKAROUND_%u", idx);
		return buf;
	case KVM_REG_ARM_FW_FEAT_BMAP:
		snprintf(buf, n, "%s", idx == 0 ? "STD_BMAP" : idx == 1 ? "STD_HYP_BMAP" :
			 idx == 2 ? "VENDOR_HYP_BMAP" : "FW bitmap");
		return buf;
	case KVM_REG_ARM64_SVE:
		snprintf(buf, n, "SVE %#x", idx);
		return buf;
	default:
		snprintf(buf, n, "%#llx", (unsigned long long)id);
		return buf;
	}
}

/* ------------------------------------------------------------------------
 * Parsing
 */

struct record {
	uint64_t id;
	const uint8_t *val;     /* reg_bytes(id) bytes in the blob */
};

struct blob_view {
	uint32_t nr_regs, mp_state;
	bool has_events;
	struct kvm_vcpu_events events;
	struct record *recs;    /* nr_regs, ascending ids; the caller frees */
};

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static int check_events(const struct kvm_vcpu_events *e, struct mig_error *err)
{
	const char *why = NULL;

	if (e->exception.serror_pending > 1 || e->exception.serror_has_esr > 1)
		why = "a flag that is neither 0 nor 1";
	else if (e->exception.ext_dabt_pending)
		/* an injection request, never state: the kernel injects at once */
		why = "an external data abort to inject";
	else if (!all_zero(e->exception.pad, sizeof(e->exception.pad)) ||
		 !all_zero((const uint8_t *)e->reserved, sizeof(e->reserved)))
		why = "non-zero reserved bytes";
	else if (e->exception.serror_esr & ~ESR_ISS_MASK)
		why = "an SError syndrome wider than ESR.ISS";
	else if (e->exception.serror_esr &&
		 !(e->exception.serror_pending && e->exception.serror_has_esr))
		why = "an SError syndrome without a pending SError that has one";
	if (why)
		return mig_error_set(err, -EINVAL, "arm64 vcpu state: the pending events hold %s",
				     why);
	return 0;
}

static int blob_parse(const uint8_t *blob, size_t len, struct blob_view *ret,
		      struct mig_error *err)
{
	struct state_header h;
	size_t off = sizeof(h);
	bool have_pc = false, have_pstate = false;

	memset(ret, 0, sizeof(*ret));
	if (len < sizeof(h))
		return mig_error_set(err, -EINVAL, "arm64 vcpu state: %zu bytes, shorter than its "
				     "%zu-byte header", len, sizeof(h));
	memcpy(h.magic, blob, 8);
	h.version = get32(blob + 8);
	h.nr_regs = get32(blob + 12);
	h.mp_state = get32(blob + 16);
	h.flags = get32(blob + 20);
	h.total_len = get64(blob + 24);
	if (memcmp(h.magic, STATE_MAGIC, 8))
		return mig_error_set(err, -EINVAL, "arm64 vcpu state: bad magic (not an arm64 vCPU "
				     "blob of this toolkit)");
	if (h.version != STATE_VERSION)
		return mig_error_set(err, -EINVAL, "arm64 vcpu state: version %u, this build reads "
				     "version %u", h.version, STATE_VERSION);
	if (h.total_len != len)
		return mig_error_set(err, -EINVAL, "arm64 vcpu state: the header says %llu bytes, "
				     "the blob has %zu", (unsigned long long)h.total_len, len);
	if (h.flags & ~ARM64_STATE_HAS_EVENTS)
		return mig_error_set(err, -EINVAL, "arm64 vcpu state: unknown flags %#x",
				     h.flags & ~ARM64_STATE_HAS_EVENTS);
	if (h.mp_state != KVM_MP_STATE_RUNNABLE && h.mp_state != KVM_MP_STATE_STOPPED &&
	    h.mp_state != KVM_MP_STATE_SUSPENDED)
		return mig_error_set(err, -EINVAL, "arm64 vcpu state: MP state %u is none an arm64 "
				     "vCPU has (runnable %u, stopped %u, suspended %u)", h.mp_state,
				     KVM_MP_STATE_RUNNABLE, KVM_MP_STATE_STOPPED,
				     KVM_MP_STATE_SUSPENDED);
	if (!h.nr_regs || h.nr_regs > MAX_REGS)
		return mig_error_set(err, -EINVAL, "arm64 vcpu state: %u registers (1 to %u)",
				     h.nr_regs, MAX_REGS);
	ret->nr_regs = h.nr_regs;
	ret->mp_state = h.mp_state;
	if (h.flags & ARM64_STATE_HAS_EVENTS) {
		int r;

		if (len - off < sizeof(ret->events))
			return mig_error_set(err, -EINVAL, "arm64 vcpu state: the pending events run "
					     "past the end of the %zu-byte blob", len);
		memcpy(&ret->events, blob + off, sizeof(ret->events));
		r = check_events(&ret->events, err);
		if (r < 0)
			return r;
		ret->has_events = true;
		off += sizeof(ret->events);
	}
	ret->recs = calloc(h.nr_regs, sizeof(*ret->recs));
	if (!ret->recs)
		return mig_error_set(err, -ENOMEM, "out of memory");
	for (uint32_t i = 0; i < h.nr_regs; i++) {
		char name[48];
		uint64_t id;
		unsigned size;
		size_t padded;

		if (len - off < 8) {
			free(ret->recs);
			ret->recs = NULL;
			return mig_error_set(err, -EINVAL, "arm64 vcpu state: register %u of %u at "
					     "offset %zu runs past the end of the %zu-byte blob",
					     i, h.nr_regs, off, len);
		}
		id = get64(blob + off);
		size = reg_bytes(id);
		padded = ALIGN_UP((size_t)size, RECORD_ALIGN);
		arm64_reg_name(id, name, sizeof(name));
		if ((id & KVM_REG_ARCH_MASK) != KVM_REG_ARM64 || size > MAX_REG_BYTES ||
		    padded > len - off - 8 || (i && id <= ret->recs[i - 1].id) ||
		    !all_zero(blob + off + 8 + size, padded - size)) {
			const char *why = (id & KVM_REG_ARCH_MASK) != KVM_REG_ARM64 ?
					  "is no arm64 register id" :
					  size > MAX_REG_BYTES ? "is wider than any register" :
					  padded > len - off - 8 ? "runs past the end of the blob" :
					  (i && id <= ret->recs[i - 1].id) ?
					  "is out of order or repeated" : "has non-zero padding";

			free(ret->recs);
			ret->recs = NULL;
			return mig_error_set(err, -EINVAL, "arm64 vcpu state: register %u of %u "
					     "(%s, id %#llx) %s", i, h.nr_regs, name,
					     (unsigned long long)id, why);
		}
		ret->recs[i] = (struct record){ id, blob + off + 8 };
		have_pc |= id == (KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE | CORE(regs.pc));
		have_pstate |= id == (KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE |
				      CORE(regs.pstate));
		off += 8 + padded;
	}
	if (off != len || !have_pc || !have_pstate) {
		free(ret->recs);
		ret->recs = NULL;
		if (off != len)
			return mig_error_set(err, -EINVAL, "arm64 vcpu state: %zu bytes after the "
					     "last register", len - off);
		return mig_error_set(err, -EINVAL, "arm64 vcpu state: no PC or PSTATE: not a "
				     "whole vCPU");
	}
	return 0;
}

int arm64_vcpu_state_validate(const uint8_t *blob, size_t len, struct mig_error *err)
{
	struct blob_view v;
	int r = blob_parse(blob, len, &v, err);

	free(v.recs);
	return r;
}

int arm64_vcpu_state_counters(const uint8_t *blob, size_t len, struct arm64_counters *ret,
			      struct mig_error *err)
{
	struct blob_view v;
	bool has_virt = false;
	int r = blob_parse(blob, len, &v, err);

	if (r < 0)
		return r;
	memset(ret, 0, sizeof(*ret));
	for (uint32_t i = 0; i < v.nr_regs; i++) {
		if (v.recs[i].id == KVM_REG_ARM_TIMER_CNT) {
			ret->virt = get64(v.recs[i].val);
			has_virt = true;
		} else if (v.recs[i].id == KVM_REG_ARM_PTIMER_CNT) {
			ret->phys = get64(v.recs[i].val);
			ret->has_phys = true;
		}
	}
	free(v.recs);
	if (!has_virt)
		return mig_error_set(err, -ENOENT, "arm64 vcpu state: no virtual counter "
				     "(KVM_REG_ARM_TIMER_CNT)");
	return 0;
}

void arm64_counters_max(struct arm64_counters *acc, const struct arm64_counters *c)
{
	if (c->virt > acc->virt)
		acc->virt = c->virt;
	if (c->has_phys && (!acc->has_phys || c->phys > acc->phys))
		acc->phys = c->phys;
	acc->has_phys |= c->has_phys;
}

/* ------------------------------------------------------------------------
 * The kernel side
 */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* KVM_GET_REG_LIST, sorted. */
static int reg_list(int vcpu_fd, uint64_t **ret, uint64_t *ret_n, struct mig_error *err)
{
	struct kvm_reg_list probe = { .n = 0 };
	struct kvm_reg_list *l;

	if (ioctl(vcpu_fd, KVM_GET_REG_LIST, &probe) == 0 || errno != E2BIG)
		return mig_error_set(err, errno ? -errno : -EIO, "KVM_GET_REG_LIST: %s (is the "
				     "vCPU initialised?)", strerror(errno ? errno : EIO));
	if (probe.n > MAX_REGS)
		return mig_error_set(err, -E2BIG, "KVM_GET_REG_LIST: %llu registers, the format "
				     "holds %u", (unsigned long long)probe.n, MAX_REGS);
	l = malloc(sizeof(*l) + probe.n * sizeof(uint64_t));
	if (!l)
		return mig_error_set(err, -ENOMEM, "out of memory");
	l->n = probe.n;
	if (ioctl(vcpu_fd, KVM_GET_REG_LIST, l) < 0) {
		int e = errno;

		free(l);
		return mig_error_set(err, -e, "KVM_GET_REG_LIST: %s", strerror(e));
	}
	*ret_n = l->n;
	*ret = malloc(l->n * sizeof(uint64_t) + 1);
	if (!*ret) {
		free(l);
		return mig_error_set(err, -ENOMEM, "out of memory");
	}
	memcpy(*ret, l->reg, l->n * sizeof(uint64_t));
	free(l);
	qsort(*ret, *ret_n, sizeof(uint64_t), cmp_u64);
	return 0;
}

static int get_reg(int vcpu_fd, uint64_t id, void *val, struct mig_error *err)
{
	struct kvm_one_reg r = { .id = id, .addr = (uint64_t)(uintptr_t)val };
	char name[48];

	if (ioctl(vcpu_fd, KVM_GET_ONE_REG, &r) < 0)
		return mig_error_set(err, -errno, "KVM_GET_ONE_REG %s (id %#llx): %s",
				     arm64_reg_name(id, name, sizeof(name)),
				     (unsigned long long)id, strerror(errno));
	return 0;
}

static int set_reg(int vcpu_fd, uint64_t id, const void *val, struct mig_error *err)
{
	struct kvm_one_reg r = { .id = id, .addr = (uint64_t)(uintptr_t)val };
	char name[48];

	if (ioctl(vcpu_fd, KVM_SET_ONE_REG, &r) < 0)
		return mig_error_set(err, -errno, "KVM_SET_ONE_REG %s (id %#llx): %s%s",
				     arm64_reg_name(id, name, sizeof(name)),
				     (unsigned long long)id, strerror(errno),
				     errno == EBUSY ? " (the destination VM has run already)" :
				     errno == EINVAL ? " (this host cannot give the vCPU that value)" :
				     "");
	return 0;
}

int arm64_vcpu_state_save(int vcpu_fd, struct mig_buf *out, struct mig_error *err)
{
	_cleanup_free_ uint64_t *ids = NULL;
	struct state_header h = { .version = STATE_VERSION };
	struct kvm_mp_state mp;
	struct kvm_vcpu_events ev;
	size_t start = out->len;
	uint64_t n;
	int r;

	r = reg_list(vcpu_fd, &ids, &n, err);
	if (r < 0)
		return r;
	if (ioctl(vcpu_fd, KVM_GET_MP_STATE, &mp) < 0)
		return mig_error_set(err, -errno, "KVM_GET_MP_STATE: %s", strerror(errno));
	memset(&ev, 0, sizeof(ev));
	if (ioctl(vcpu_fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
		return mig_error_set(err, -errno, "KVM_GET_VCPU_EVENTS: %s", strerror(errno));
	/* the kernel reports whether the host could carry a syndrome even with
	 * no SError pending; the blob keeps only state, so a reader can insist
	 * on it (check_events) */
	if (!ev.exception.serror_pending) {
		ev.exception.serror_has_esr = 0;
		ev.exception.serror_esr = 0;
	}
	memcpy(h.magic, STATE_MAGIC, 8);
	h.nr_regs = (uint32_t)n;
	h.mp_state = mp.mp_state;
	h.flags = ARM64_STATE_HAS_EVENTS;
	r = mig_buf_append(out, &h, sizeof(h));
	if (r >= 0)
		r = mig_buf_append(out, &ev, sizeof(ev));
	for (uint64_t i = 0; r >= 0 && i < n; i++) {
		uint8_t val[MAX_REG_BYTES] = { 0 };
		unsigned size = reg_bytes(ids[i]);
		char name[48];

		if (size > MAX_REG_BYTES) {
			out->len = start;
			return mig_error_set(err, -E2BIG, "register %s is %u bytes, the format holds "
					     "%u", arm64_reg_name(ids[i], name, sizeof(name)), size,
					     MAX_REG_BYTES);
		}
		r = get_reg(vcpu_fd, ids[i], val, err);
		if (r < 0) {
			out->len = start;
			return r;
		}
		r = mig_buf_append(out, &ids[i], 8);
		if (r >= 0)
			r = mig_buf_append(out, val, ALIGN_UP(size, RECORD_ALIGN));
	}
	if (r < 0) {
		out->len = start;
		return mig_error_set(err, r, "arm64 vcpu state: %s", strerror(-r));
	}
	h.total_len = out->len - start;
	memcpy(out->data + start + offsetof(struct state_header, total_len), &h.total_len, 8);
	return 0;
}

/* Load order (see the top of the file): lower ranks first. */
static int load_rank(uint64_t id)
{
	switch (id) {
	case KVM_REG_ARM_TIMER_CNT:
	case KVM_REG_ARM_PTIMER_CNT:
		return 4;
	case KVM_REG_ARM_TIMER_CVAL:
	case KVM_REG_ARM_PTIMER_CVAL:
		return 5;
	case KVM_REG_ARM_TIMER_CTL:
	case KVM_REG_ARM_PTIMER_CTL:
		return 6;
	}
	switch (coproc(id)) {
	case KVM_REG_ARM_FW:
	case KVM_REG_ARM_FW_FEAT_BMAP:
		return 0;
	case KVM_REG_ARM_DEMUX:
		return 1;
	case KVM_REG_ARM_CORE:
	case KVM_REG_ARM64_SVE:
		return 3;
	default:
		return 2;
	}
}

struct pending_set {
	const struct record *rec;
	int rank;
};

static int cmp_rank(const void *a, const void *b)
{
	const struct pending_set *x = a, *y = b;

	if (x->rank != y->rank)
		return x->rank - y->rank;
	/* within a rank, id order; a timer's CNT, CVAL and CTL each have their
	 * own rank, so the virtual and physical timer interleave harmlessly */
	return x->rec->id < y->rec->id ? -1 : x->rec->id > y->rec->id;
}

int arm64_vcpu_state_load(int vcpu_fd, const uint8_t *blob, size_t len,
			  struct arm64_state_stats *stats, struct mig_error *err)
{
	_cleanup_free_ uint64_t *have = NULL;
	_cleanup_free_ struct pending_set *order = NULL;
	struct arm64_state_stats st = { 0 };
	struct blob_view v;
	struct kvm_mp_state mp;
	uint64_t n_have;
	int r;

	r = blob_parse(blob, len, &v, err);
	if (r < 0)
		return r;
	r = reg_list(vcpu_fd, &have, &n_have, err);
	if (r < 0)
		goto out;
	/* every register of the blob must exist here before anything is written */
	for (uint32_t i = 0; i < v.nr_regs; i++) {
		char name[48];

		if (!bsearch(&v.recs[i].id, have, n_have, sizeof(uint64_t), cmp_u64)) {
			r = mig_error_set(err, -EINVAL, "arm64 vcpu state: the destination vCPU has "
					  "no register %s (id %#llx): its features or its kernel "
					  "differ from the source's",
					  arm64_reg_name(v.recs[i].id, name, sizeof(name)),
					  (unsigned long long)v.recs[i].id);
			goto out;
		}
	}
	st.regs = v.nr_regs;
	st.dest_only = (unsigned)(n_have - v.nr_regs);
	order = calloc(v.nr_regs, sizeof(*order));
	if (!order) {
		r = mig_error_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < v.nr_regs; i++)
		order[i] = (struct pending_set){ &v.recs[i], load_rank(v.recs[i].id) };
	qsort(order, v.nr_regs, sizeof(*order), cmp_rank);

	for (uint32_t i = 0; i < v.nr_regs; i++) {
		const struct record *rec = order[i].rec;
		unsigned size = reg_bytes(rec->id);
		uint8_t cur[MAX_REG_BYTES], want[MAX_REG_BYTES];

		memcpy(want, rec->val, size);
		r = get_reg(vcpu_fd, rec->id, cur, err);
		if (r < 0)
			goto out;
		if (!memcmp(cur, want, size)) {
			st.unchanged++;
			continue;
		}
		r = set_reg(vcpu_fd, rec->id, want, err);
		if (r < 0)
			goto out;
		st.set++;
	}
	if (v.has_events && ioctl(vcpu_fd, KVM_SET_VCPU_EVENTS, &v.events) < 0) {
		r = mig_error_set(err, -errno, "KVM_SET_VCPU_EVENTS: %s", strerror(errno));
		goto out;
	}
	mp.mp_state = v.mp_state;
	if (ioctl(vcpu_fd, KVM_SET_MP_STATE, &mp) < 0) {
		r = mig_error_set(err, -errno, "KVM_SET_MP_STATE %u: %s", v.mp_state,
				  strerror(errno));
		goto out;
	}
	if (stats)
		*stats = st;
	r = 0;
out:
	free(v.recs);
	return r;
}

int arm64_vm_counters_set(int vcpu_fd, const struct arm64_counters *c, struct mig_error *err)
{
	int r = set_reg(vcpu_fd, KVM_REG_ARM_TIMER_CNT, &c->virt, err);

	if (r >= 0 && c->has_phys)
		r = set_reg(vcpu_fd, KVM_REG_ARM_PTIMER_CNT, &c->phys, err);
	return r;
}
