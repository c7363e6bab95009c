// SPDX-License-Identifier: MIT
/*
 * The lab VM's x86 part (lab-internal.h): RAM from GPA 0, its first 2 MiB
 * the VMM's table, GDT/TSS, page tables, stacks and the payload; the guest
 * runs in 64-bit long mode set up directly with KVM_SET_SREGS (no
 * firmware, no real mode: on PVM hosts only paged CPL3 code runs
 * natively), identity-mapped with 2 MiB pages, and rings its doorbells with
 * port I/O.  The VM-wide device is the x86 platform (irqchip, PIT,
 * kvmclock); the guest paces itself by the TSC.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "lab-abi.h"
#include "lab-internal.h"
#include "util.h"
#if HAVE_SEV
#include "sev/sev.h"
#endif

/* System area layout (guest physical = guest virtual). */
#define SYS_TABLE      0x0000ULL
#define SYS_GDT        0x6000ULL
#define SYS_TSS        0x7000ULL
#define SYS_PML4       0x8000ULL
#define SYS_PDPT       0x9000ULL
#define SYS_PD         0xA000ULL   /* one page per GiB, up to 64 */
#define SYS_STACKS     0x80000ULL  /* one 4 KiB stack per vCPU */
#define SYS_CODE       0x100000ULL

#define SEL_UCODE      0x1b        /* GDT[3], RPL 3 */
#define SEL_UDATA      0x23        /* GDT[4], RPL 3 */
#define SEL_KCODE      0x08        /* GDT[1]: an SEV guest's vCPU 0 (lab-abi.h) */
#define SEL_KDATA      0x10        /* GDT[2] */
#define SEL_TSS        0x28        /* GDT[5..6] */

#define PTE_P   (1ULL << 0)
#define PTE_RW  (1ULL << 1)
#define PTE_US  (1ULL << 2)
#define PTE_PS  (1ULL << 7)

#define CR0_PE  (1ULL << 0)
#define CR0_MP  (1ULL << 1)
#define CR0_ET  (1ULL << 4)
#define CR0_NE  (1ULL << 5)
#define CR0_WP  (1ULL << 16)
#define CR0_AM  (1ULL << 18)
#define CR0_PG  (1ULL << 31)
#define CR4_PAE (1ULL << 5)
#define CR4_OSFXSR (1ULL << 9)
#define CR4_OSXMMEXCPT (1ULL << 10)
#define EFER_LME (1ULL << 8)
#define EFER_LMA (1ULL << 10)
#define RFLAGS_IOPL3 (3ULL << 12)

extern const uint8_t lab_guest_start[], lab_guest_end[];

struct lab_arch {
	struct platform_dev *platform;
	uint64_t tsc_khz;
#if HAVE_SEV
	struct sev_dev *sev;
	unsigned sev_mode;            /* LAB_SEV_MODE_* */
#endif
};

static void write_page_tables(struct lab_vm *vm)
{
	uint8_t *ram = vm->mem->ram;
	uint64_t *pml4 = (uint64_t *)(ram + SYS_PML4), *pdpt = (uint64_t *)(ram + SYS_PDPT);
	uint64_t gib = DIV_ROUND_UP(vm->cfg.mem_bytes, 1ULL << 30);

	memset(pml4, 0, 4096);
	memset(pdpt, 0, 4096);
	pml4[0] = SYS_PDPT | PTE_P | PTE_RW | PTE_US;
	for (uint64_t g = 0; g < gib; g++) {
		uint64_t *pd = (uint64_t *)(ram + SYS_PD + g * 4096);

		pdpt[g] = (SYS_PD + g * 4096) | PTE_P | PTE_RW | PTE_US;
		memset(pd, 0, 4096);
		for (uint64_t e = 0; e < 512; e++) {
			uint64_t gpa = (g << 30) + (e << 21);

			if (gpa >= vm->cfg.mem_bytes)
				break;
			pd[e] = gpa | PTE_P | PTE_RW | PTE_US | PTE_PS;
		}
	}
}

static void write_gdt_tss(struct lab_vm *vm)
{
	uint64_t *gdt = (uint64_t *)(vm->mem->ram + SYS_GDT);
	uint64_t tss = SYS_TSS, limit = 0x67;

	memset(gdt, 0, 4096);
	memset(vm->mem->ram + SYS_TSS, 0, 4096);
	gdt[1] = 0x00af9a000000ffffULL;  /* kernel code, 64-bit */
	gdt[2] = 0x00cf92000000ffffULL;  /* kernel data */
	gdt[3] = 0x00affa000000ffffULL;  /* user code, 64-bit, DPL 3 */
	gdt[4] = 0x00cff2000000ffffULL;  /* user data, DPL 3 */
	/* 64-bit busy TSS descriptor, 16 bytes */
	gdt[5] = (limit & 0xffff) | ((tss & 0xffffff) << 16) | (0x8bULL << 40) |
		 (((tss >> 24) & 0xff) << 56);
	gdt[6] = tss >> 32;
}

static void seg(struct kvm_segment *s, uint64_t base, uint32_t limit, uint16_t sel,
		uint8_t type, uint8_t dpl, uint8_t db, uint8_t sflag, uint8_t l, uint8_t g)
{
	*s = (struct kvm_segment){
		.base = base, .limit = limit, .selector = sel, .type = type, .present = 1,
		.dpl = dpl, .db = db, .s = sflag, .l = l, .g = g,
	};
}

/* At CPL3, or at CPL0 for an SEV guest's vCPU 0 (lab-abi.h). */
static int boot_vcpu(struct vcpu_dev *v, bool cpl0, struct mig_error *err)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs = { 0 };
	struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };

	if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		return mig_error_set(err, -errno, "vCPU %u: KVM_GET_SREGS: %s", v->index,
				     strerror(errno));
	if (cpl0) {
		seg(&sregs.cs, 0, 0xffffffff, SEL_KCODE, 0xb, 0, 0, 1, 1, 1);
		seg(&sregs.ss, 0, 0xffffffff, SEL_KDATA, 0x3, 0, 1, 1, 0, 1);
	} else {
		seg(&sregs.cs, 0, 0xffffffff, SEL_UCODE, 0xb, 3, 0, 1, 1, 1);
		seg(&sregs.ss, 0, 0xffffffff, SEL_UDATA, 0x3, 3, 1, 1, 0, 1);
	}
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss;
	seg(&sregs.tr, SYS_TSS, 0x67, SEL_TSS, 0xb, 0, 0, 0, 0, 0);
	sregs.ldt = (struct kvm_segment){ .type = 2, .unusable = 1 };
	sregs.gdt.base = SYS_GDT;
	sregs.gdt.limit = 7 * 8 - 1;
	/* No IDT: any exception escalates to a triple fault, which the VMM sees
	 * as KVM_EXIT_SHUTDOWN and reports, rather than a guest that hangs. */
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_PG;
	sregs.cr3 = SYS_PML4;
	sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
	sregs.efer = EFER_LME | EFER_LMA;
	if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
		return mig_error_set(err, -errno, "vCPU %u: KVM_SET_SREGS (long mode): %s",
				     v->index, strerror(errno));
	regs.rip = SYS_CODE;
	regs.rsp = SYS_STACKS + (v->index + 1) * 4096ULL;
	regs.rdi = v->index;
	regs.rsi = SYS_TABLE;
	regs.rflags = RFLAGS_IOPL3 | 0x2;
	if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
		return mig_error_set(err, -errno, "vCPU %u: KVM_SET_REGS: %s", v->index,
				     strerror(errno));
	/* With an in-kernel LAPIC the APs wait for INIT/SIPI; there is no
	 * firmware to send them, so make every vCPU runnable directly. */
	if (ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0)
		return mig_error_set(err, -errno, "vCPU %u: KVM_SET_MP_STATE: %s", v->index,
				     strerror(errno));
	return 0;
}

#if HAVE_SEV
/* An SEV guest: its firmware and the class's device, the exits it needs,
 * and the KVM features its guest is told of (KERNEL-UAPI §5.2). */
static int sev_create(struct lab_vm *vm, struct mig_error *err)
{
	struct lab_arch *a = vm->arch;
	struct sev_fw *fw = NULL;
	bool hc = sev_kvm_hypercall_exits(vm->fds.kvm_fd);
	int r;

	if (vm->cfg.sev_report == LAB_SEV_REPORT_HYPERCALL && !hc)
		return mig_error_set(err, -ENOTSUP, "sev-report=hypercall: this host's KVM does not "
				     "forward the guest's KVM_HC_MAP_GPA_RANGE to userspace (a PVM "
				     "host never does); use sev-report=doorbell or auto");
	a->sev_mode = vm->cfg.sev_report == LAB_SEV_REPORT_DOORBELL || !hc ?
		      LAB_SEV_MODE_DOORBELL : LAB_SEV_MODE_HYPERCALL;
	r = vm->cfg.sev == LAB_SEV_SIM ? sev_fw_sim_create(&fw, err) :
	    sev_fw_kernel_create(vm->fds.vm_fd, &fw, err);
	if (r >= 0)
		r = sev_dev_create(fw, vm->mem->ram, 0, vm->mem->nr_pages, SEV_POLICY_NODBG,
				   vm->cfg.destination, &a->sev, err);
	if (r >= 0)
		r = sev_kvm_enable_exits(vm->fds.kvm_fd, vm->fds.vm_fd, hc, err);
	vm->fds.kvm_features_add = SEV_CPUID_HC_MAP_GPA_RANGE | SEV_CPUID_MIGRATION_CONTROL;
	return r;
}

/* What vCPU 0 needs to play the SEV guest (lab-abi.h). */
static void sev_boot(struct lab_vm *vm, const struct lab_work *work)
{
	uint64_t tpms = vm->arch->tsc_khz;
	const struct lab_config *c = &vm->cfg;

	lab_va_write(vm, 0, LAB_X86_VA_SEV_MODE, vm->arch->sev_mode);
	lab_va_write(vm, 0, LAB_X86_VA_SEV_READY, c->sev_ready_ms * tpms);
	lab_va_write(vm, 0, LAB_X86_VA_SEV_UNREADY, c->sev_unready_ms * tpms);
	lab_va_write(vm, 0, LAB_X86_VA_SEV_FLIP, c->sev_flip_ms * tpms);
	lab_va_write(vm, 0, LAB_X86_VA_SEV_FLIP_GPA, work[1].region);   /* vCPU 0 has none */
	lab_va_write(vm, 0, LAB_X86_VA_SEV_RAM_PAGES, vm->mem->nr_pages);
	lab_va_write(vm, 0, LAB_X86_VA_SEV_SHARED, SYS_TABLE);
}
#else
static int sev_create(struct lab_vm *vm, struct mig_error *err)
{
	(void)vm;
	return mig_error_set(err, -ENOTSUP, "this build has no SEV class");
}
#endif

uint64_t lab_arch_ram_base(void)
{
	return 0;
}

int lab_arch_create(struct lab_vm *vm, struct mig_error *err)
{
	vm->arch = calloc(1, sizeof(*vm->arch));
	if (!vm->arch)
		return mig_error_set(err, -ENOMEM, "out of memory");
	vm->table = SYS_TABLE;
	if (vm->cfg.msi)
		return mig_error_set(err, -ENOTSUP, "msi=%u: the MSI devices raise LPIs through an "
				     "ITS, which the arm64 lab VM has and this x86 one does not",
				     vm->cfg.msi);
	/* An in-kernel irqchip gives each vCPU a LAPIC, part of the state a real
	 * migration carries; it must exist before the vCPUs (KERNEL-UAPI §4). */
	if (ioctl(vm->fds.vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return mig_error_set(err, -errno, "KVM_CREATE_IRQCHIP: %s", strerror(errno));
	if (vm->cfg.sev) {
		int r = sev_create(vm, err);

		if (r < 0)
			return r;
	}
	return platform_dev_create(&vm->fds, &vm->arch->platform, err);
}

int lab_arch_vcpus_made(struct lab_vm *vm, struct mig_device **out, unsigned *ret_n,
			struct mig_error *err)
{
	int r = ioctl(vm->vcpus[0]->fd, KVM_GET_TSC_KHZ, 0);

	(void)err;
	vm->arch->tsc_khz = r > 0 ? (uint64_t)r : 1000000;
	out[0] = &vm->arch->platform->core;
	*ret_n = 1;
#if HAVE_SEV
	if (vm->arch->sev)
		out[(*ret_n)++] = &vm->arch->sev->core;
#endif
	return 0;
}

void lab_arch_destroy(struct lab_vm *vm)
{
	if (!vm->arch)
		return;
	platform_dev_destroy(vm->arch->platform);
#if HAVE_SEV
	sev_dev_destroy(vm->arch->sev);
#endif
	free(vm->arch);
	vm->arch = NULL;
}

int lab_arch_boot(struct lab_vm *vm, const struct lab_work *work, struct mig_error *err)
{
	size_t code = (size_t)(lab_guest_end - lab_guest_start);
	int r;

	if (code > LAB_SYSTEM_BYTES - SYS_CODE)
		return mig_error_set(err, -E2BIG, "guest payload of %zu bytes does not fit", code);
	write_gdt_tss(vm);
	write_page_tables(vm);
	memset(vm->mem->ram + SYS_TABLE, 0, LAB_TBL_VCPUS);
	lab_table_write(vm->mem->ram + SYS_TABLE, vm->nr_vcpus, work);
#if HAVE_SEV
	if (vm->arch->sev)
		sev_boot(vm, work);
#endif
	memcpy(vm->mem->ram + SYS_CODE, lab_guest_start, code);
	for (uint32_t i = 0; i < vm->nr_vcpus; i++) {
		r = boot_vcpu(vm->vcpus[i], i == 0 && vm->cfg.sev, err);
		if (r < 0)
			return r;
	}
	return mig_device_step(&vm->arch->platform->core, PLATFORM_RUNNING, err);
}

uint64_t lab_arch_ticks_hz(const struct lab_vm *vm)
{
	return vm->arch->tsc_khz * 1000;
}

uint64_t lab_arch_errors(struct lab_vm *vm)
{
	(void)vm;
	return 0;
}

#if HAVE_SEV
/* The SEV guest's doorbell: the hypercall's arguments in vCPU 0's area. */
static int sev_doorbell(struct lab_vm *vm, struct vcpu_dev *v)
{
	uint64_t ret;

	if (!vm->arch->sev || v->index != 0) {
		vcpu_set_fatal(v, -EPROTO, "vCPU %u: SEV doorbell, and this is no SEV guest's "
			       "vCPU 0", v->index);
		return -EPROTO;
	}
	ret = sev_map_gpa_range(vm->arch->sev, lab_va_read(vm, 0, LAB_X86_VA_SEV_ARG0),
				lab_va_read(vm, 0, LAB_X86_VA_SEV_ARG1),
				lab_va_read(vm, 0, LAB_X86_VA_SEV_ARG2), true);
	lab_va_write(vm, 0, LAB_X86_VA_SEV_ARG2, -ret);
	return 0;
}

/* A hypercall or MSR exit: the SEV class's, or a guest the VMM stops. */
static int sev_exit(void *arg, struct vcpu_dev *v, struct kvm_run *run)
{
	struct lab_vm *vm = arg;

	if (vm->arch->sev && sev_kvm_exit(vm->arch->sev, run) == 0)
		return 0;
	vcpu_set_fatal(v, -EPROTO, "vCPU %u: exit %u (hypercall or MSR) that no device of this "
		       "VM takes", v->index, run->exit_reason);
	return -EPROTO;
}
#endif

/* Port I/O doorbells: the port is the doorbell (lab-abi.h). */
static int io_out(void *arg, struct vcpu_dev *v, uint16_t port, uint8_t val)
{
	int r;

#if HAVE_SEV
	if (port == LAB_PORT_SEV_MAP)
		return sev_doorbell(arg, v);
#endif
	r = lab_doorbell(arg, v, port);

	(void)val;
	if (r == -ENOENT) {
		vcpu_set_fatal(v, -EPROTO, "vCPU %u: write to unknown port %#x", v->index, port);
		return -EPROTO;
	}
	return r;
}

const struct vcpu_exit_ops lab_arch_exits = {
	.io_out = io_out,
	.dirty_ring_full = lab_ring_full,
	.ran = lab_vcpu_ran,
#if HAVE_SEV
	.hypercall = sev_exit,
	.msr = sev_exit,
#endif
};
