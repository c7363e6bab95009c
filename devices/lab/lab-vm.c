// SPDX-License-Identifier: MIT
/*
 * The lab VM: a KVM guest hosted by this process.  RAM starts at GPA 0; its
 * first 2 MiB hold the VMM's table, GDT/TSS, page tables, stacks and the
 * payload; the rest is the workload's.  The guest runs in 64-bit long mode set
 * up directly with KVM_SET_SREGS (no firmware, no real mode: on PVM hosts only
 * paged CPL3 code runs natively), identity-mapped with 2 MiB pages.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "devices/lab/lab-abi.h"
#include "devices/lab/lab-internal.h"
#include "devices/vcpu/x86-state.h"
#include "migrate/macro.h"

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

#define STATE_MAGIC   0x3153424c4749494dULL  /* "MIIGLBS1" */
#define STATE_VERSION 1
#define IO_SLEEP_MAX_NS (200ULL * 1000 * 1000)
#define IO_IDLE_NS      (20ULL * 1000 * 1000)

extern const uint8_t lab_guest_start[], lab_guest_end[];

const struct lab_config *lab_vm_config(const struct lab_vm *vm)
{
	return &vm->cfg;
}

static uint8_t *va_host(struct lab_vm *vm, unsigned i)
{
	return vm->mem->ram + SYS_TABLE + LAB_TBL_VCPUS + (uint64_t)i * LAB_VA_SIZE;
}

static uint64_t va_read(struct lab_vm *vm, unsigned i, unsigned off)
{
	return __atomic_load_n((uint64_t *)(va_host(vm, i) + off), __ATOMIC_RELAXED);
}

static void va_write(struct lab_vm *vm, unsigned i, unsigned off, uint64_t val)
{
	*(uint64_t *)(va_host(vm, i) + off) = val;
}

/* ---- what the host can give a guest ---- */

/* The path root + path, in buf. */
static const char *host_path(char *buf, size_t n, const char *root, const char *path)
{
	snprintf(buf, n, "%s%s", root ? root : "", path);
	return buf;
}

/* The number after "key" at the start of a line of the file (meminfo's
 * "MemAvailable:", memory.stat's "inactive_file "), times unit; false if
 * none. */
static bool host_read_key(const char *file, const char *key, uint64_t unit, uint64_t *ret)
{
	FILE *f = fopen(file, "re");
	size_t klen = strlen(key);
	char line[256];
	bool found = false;

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		unsigned long long v;

		if (!strncmp(line, key, klen) && sscanf(line + klen, "%llu", &v) == 1) {
			*ret = (uint64_t)v * unit;
			found = true;
		}
	}
	fclose(f);
	return found;
}

/* A cgroup v2 file of one number ("max" reads as none): false if none. */
static bool host_read_u64(const char *file, uint64_t *ret)
{
	FILE *f = fopen(file, "re");
	unsigned long long v;
	bool found;

	if (!f)
		return false;
	found = fscanf(f, "%llu", &v) == 1;
	fclose(f);
	if (found)
		*ret = v;
	return found;
}

/*
 * Where this process's cgroup v2 directory is: the "0::PATH" line of
 * /proc/self/cgroup under the cgroup2 mount of /proc/self/mountinfo.  A
 * mount of a subtree (its root field is not "/") is matched by stripping
 * that root from PATH.  Sets dir (the directory) and rel (the cgroup's
 * path, pointing into dir); false when there is no cgroup v2 to look at.
 */
static bool host_cgroup_dir(const char *root, char *dir, size_t n, const char **rel)
{
	char file[512], path[512] = "", line[1024], mroot[512] = "", mpoint[512] = "";
	FILE *f = fopen(host_path(file, sizeof(file), root, "/proc/self/cgroup"), "re");
	const char *p;
	size_t rlen;

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "0::", 3) && sscanf(line + 3, "%511s", path) == 1)
			break;
	fclose(f);
	if (path[0] != '/')
		return false;
	f = fopen(host_path(file, sizeof(file), root, "/proc/self/mountinfo"), "re");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		const char *sep = strstr(line, " - cgroup2 ");

		if (sep && sscanf(line, "%*s %*s %*s %511s %511s", mroot, mpoint) == 2)
			break;
		mpoint[0] = '\0';
	}
	fclose(f);
	if (!mpoint[0])
		return false;
	p = path;
	rlen = strcmp(mroot, "/") ? strlen(mroot) : 0;
	if (rlen) {
		if (strncmp(path, mroot, rlen) || (path[rlen] && path[rlen] != '/'))
			return false;   /* our cgroup is outside what is mounted */
		p += rlen;
	}
	if (!strcmp(p, "/"))
		p = "";
	if ((size_t)snprintf(dir, n, "%s%s", host_path(file, sizeof(file), root, mpoint), p) >= n)
		return false;
	*rel = dir + strlen(dir) - strlen(p);
	return true;
}

uint64_t lab_host_mem_available(const char *root, char *ret_what, size_t n)
{
	char file[600], dir[512];
	const char *rel;
	uint64_t avail = UINT64_MAX, v;

	snprintf(ret_what, n, "nothing limits it");
	if (host_read_key(host_path(file, sizeof(file), root, "/proc/meminfo"), "MemAvailable:",
			  1024, &v)) {
		avail = v;
		snprintf(ret_what, n, "MemAvailable");
	}
	if (!host_cgroup_dir(root, dir, sizeof(dir), &rel))
		return avail;
	/*
	 * A cgroup and each of its ancestors cap what its processes may use:
	 * the room under each is memory.max - memory.current.  The page cache
	 * counted in memory.current is reclaimed before the OOM killer comes,
	 * so it counts as room, as MemAvailable counts it.
	 */
	for (;;) {
		char *slash;
		uint64_t max, cur, act = 0, inact = 0, room;

		snprintf(file, sizeof(file), "%s/memory.max", dir);
		if (host_read_u64(file, &max)) {
			snprintf(file, sizeof(file), "%s/memory.current", dir);
			if (!host_read_u64(file, &cur))
				cur = 0;
			snprintf(file, sizeof(file), "%s/memory.stat", dir);
			host_read_key(file, "active_file ", 1, &act);
			host_read_key(file, "inactive_file ", 1, &inact);
			cur -= act + inact < cur ? act + inact : cur;
			room = max > cur ? max - cur : 0;
			if (room < avail) {
				avail = room;
				snprintf(ret_what, n, "memory.max of cgroup %s, less what it uses",
					 *rel ? rel : "/");
			}
		}
		slash = strrchr(rel, '/');
		if (!*rel || !slash)
			break;
		*slash = '\0';   /* on to the parent; rel "" is the mount's root */
	}
	return avail;
}

/* "64 GiB", "21.3 GiB", "512 MiB": a size for a message. */
static const char *mem_text(char *buf, size_t n, uint64_t bytes)
{
	if (bytes >= (1ULL << 30) && !(bytes & ((1ULL << 30) - 1)))
		snprintf(buf, n, "%llu GiB", (unsigned long long)(bytes >> 30));
	else if (bytes >= (1ULL << 30))
		snprintf(buf, n, "%.1f GiB", (double)bytes / (1ULL << 30));
	else
		snprintf(buf, n, "%.1f MiB", (double)bytes / (1ULL << 20));
	return buf;
}

/* The guest's RAM is mapped MAP_NORESERVE and then pre-faulted: past what
 * the host can give, the pre-fault meets the OOM killer instead of an
 * error.  Another guest created at the same time can still take the same
 * memory; this catches the size that can never fit. */
static int check_host_mem(const struct lab_config *cfg, struct mig_error *err)
{
	char what[160], need[32], have[32];
	uint64_t avail = lab_host_mem_available(NULL, what, sizeof(what));

	if (cfg->mem_bytes <= avail)
		return 0;
	return mig_error_set(err, -ENOMEM, "the guest needs %s of RAM, but this host can give "
			     "%s (%s): choose a smaller mem=", mem_text(need, sizeof(need),
			     cfg->mem_bytes), mem_text(have, sizeof(have), avail), what);
}

int lab_vm_create(const struct lab_config *cfg, struct lab_vm **ret, struct mig_error *err)
{
	struct lab_vm *vm;
	int r, api;

	r = lab_config_check(cfg, err);
	if (r >= 0)
		r = check_host_mem(cfg, err);
	if (r < 0)
		return r;
	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return mig_error_set(err, -ENOMEM, "out of memory");
	vm->cfg = *cfg;
	vm->vm_fd = -1;
	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		r = mig_error_set(err, -errno, "cannot open /dev/kvm: %s (is KVM enabled on this "
				  "host, and may this user open /dev/kvm?)", strerror(errno));
		goto err_free;
	}
	api = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION) {
		r = mig_error_set(err, -ENOTSUP, "KVM API version %d, this build needs %d", api,
				  KVM_API_VERSION);
		goto err_close;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		r = mig_error_set(err, -errno, "KVM_CREATE_VM: %s", strerror(errno));
		goto err_close;
	}
	/* Memory first: the dirty ring must be enabled before any vCPU exists. */
	r = mem_dev_create(vm->kvm_fd, vm->vm_fd, cfg->mem_bytes, cfg->dirty_log,
			   cfg->force_classic, cfg->ring_entries, &vm->mem, err);
	if (r < 0)
		goto err_close;
	vm->sync_new = calloc(mem_bitmap_words(vm->mem), 8);
	if (!vm->sync_new) {
		r = mig_error_set(err, -ENOMEM, "out of memory");
		goto err_mem;
	}
	/* An in-kernel irqchip gives each vCPU a LAPIC, part of the state a real
	 * migration carries; it must exist before the vCPUs. */
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		r = mig_error_set(err, -errno, "KVM_CREATE_IRQCHIP: %s", strerror(errno));
		goto err_mem;
	}
	for (uint32_t i = 0; i < cfg->vcpus; i++) {
		r = vcpu_dev_create(vm, i, &vm->vcpus[i], err);
		if (r < 0)
			goto err_vcpus;
		vm->nr_vcpus = i + 1;
	}
	r = ioctl(vm->vcpus[0]->fd, KVM_GET_TSC_KHZ, 0);
	vm->tsc_khz = r > 0 ? (uint64_t)r : 1000000;
	*ret = vm;
	return 0;

err_vcpus:
	for (uint32_t i = 0; i < vm->nr_vcpus; i++)
		vcpu_dev_destroy(vm->vcpus[i]);
err_mem:
	mem_dev_destroy(vm->mem);
	free(vm->sync_new);
err_close:
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	close(vm->kvm_fd);
err_free:
	free(vm);
	return r;
}

void lab_vm_destroy(struct lab_vm *vm)
{
	if (!vm)
		return;
	/* vCPU threads first: nothing may touch RAM once it is unmapped. */
	for (uint32_t i = 0; i < vm->nr_vcpus; i++)
		vcpu_dev_destroy(vm->vcpus[i]);
	mem_dev_destroy(vm->mem);
	free(vm->sync_new);
	close(vm->vm_fd);
	close(vm->kvm_fd);
	mig_buf_free(&vm->loaded_vm);
	free(vm);
}

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

static void write_table(struct lab_vm *vm)
{
	uint8_t *t = vm->mem->ram + SYS_TABLE;
	uint64_t work_pages = (vm->cfg.mem_bytes - LAB_SYSTEM_BYTES) >> GUEST_PAGE_SHIFT;
	uint64_t wss_pages = vm->cfg.wss_bytes >> GUEST_PAGE_SHIFT;
	uint64_t n = vm->nr_vcpus, next = LAB_SYSTEM_BYTES, per_vcpu_rate = 0;

	memset(t, 0, LAB_TBL_VCPUS + n * LAB_VA_SIZE);
	*(uint64_t *)(t + LAB_TBL_OFF_MAGIC) = LAB_TBL_MAGIC;
	*(uint64_t *)(t + LAB_TBL_OFF_VERSION) = LAB_TBL_VERSION;
	*(uint64_t *)(t + LAB_TBL_OFF_NR_VCPUS) = n;
	if (vm->cfg.rate) {
		per_vcpu_rate = vm->cfg.rate / n;
		if (!per_vcpu_rate)
			per_vcpu_rate = 1;
	}
	/* Each vCPU fills and stamps only its own share: no two vCPUs write the
	 * same page, so a stamp can only change through a fault of the VMM. */
	for (unsigned i = 0; i < n; i++) {
		uint64_t region = work_pages / n + (i < work_pages % n);
		uint64_t wss = wss_pages / n + (i < wss_pages % n);

		va_write(vm, i, LAB_VA_ID, i);
		va_write(vm, i, LAB_VA_REGION, next);
		va_write(vm, i, LAB_VA_REGION_PAGES, region);
		va_write(vm, i, LAB_VA_WSS_PAGES, wss);
		va_write(vm, i, LAB_VA_PATTERN, vm->cfg.pattern == LAB_PATTERN_RANDOM);
		va_write(vm, i, LAB_VA_SEED, vm->cfg.seed);
		va_write(vm, i, LAB_VA_TSC_PER_PAGE,
			 per_vcpu_rate ? vm->tsc_khz * 1000 / per_vcpu_rate : 0);
		next += region << GUEST_PAGE_SHIFT;
	}
}

static void seg(struct kvm_segment *s, uint64_t base, uint32_t limit, uint16_t sel,
		uint8_t type, uint8_t dpl, uint8_t db, uint8_t sflag, uint8_t l, uint8_t g)
{
	*s = (struct kvm_segment){
		.base = base, .limit = limit, .selector = sel, .type = type, .present = 1,
		.dpl = dpl, .db = db, .s = sflag, .l = l, .g = g,
	};
}

static int boot_vcpu(struct vcpu_dev *v, struct mig_error *err)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs = { 0 };
	struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };

	if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		return mig_error_set(err, -errno, "vCPU %u: KVM_GET_SREGS: %s", v->index,
				     strerror(errno));
	seg(&sregs.cs, 0, 0xffffffff, SEL_UCODE, 0xb, 3, 0, 1, 1, 1);
	seg(&sregs.ss, 0, 0xffffffff, SEL_UDATA, 0x3, 3, 1, 1, 0, 1);
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

int lab_vm_start(struct lab_vm *vm, struct mig_error *err)
{
	size_t code = (size_t)(lab_guest_end - lab_guest_start);
	int r;

	if (code > LAB_SYSTEM_BYTES - SYS_CODE)
		return mig_error_set(err, -E2BIG, "guest payload of %zu bytes does not fit", code);
	write_gdt_tss(vm);
	write_page_tables(vm);
	write_table(vm);
	memcpy(vm->mem->ram + SYS_CODE, lab_guest_start, code);
	for (uint32_t i = 0; i < vm->nr_vcpus; i++) {
		r = boot_vcpu(vm->vcpus[i], err);
		if (r < 0)
			return r;
	}
	for (uint32_t i = 0; i < vm->nr_vcpus; i++) {
		r = mig_device_step(&vm->vcpus[i]->core, VCPU_RUNNING, err);
		if (r < 0)
			return r;
	}
	return 0;
}

int lab_vm_pause(struct lab_vm *vm, struct mig_error *err)
{
	int r;

	/* Kick all, then wait for all: the vCPUs leave KVM_RUN in parallel. */
	for (uint32_t i = 0; i < vm->nr_vcpus; i++) {
		if (vm->vcpus[i]->core.state != VCPU_RUNNING)
			continue;
		r = mig_device_step(&vm->vcpus[i]->core, VCPU_PAUSING, err);
		if (r < 0)
			return r;
	}
	for (uint32_t i = 0; i < vm->nr_vcpus; i++) {
		if (vm->vcpus[i]->core.state != VCPU_PAUSING)
			continue;
		r = mig_device_step(&vm->vcpus[i]->core, VCPU_QUIESCED, err);
		if (r < 0)
			return r;
	}
	return 0;
}

int lab_vm_resume(struct lab_vm *vm, struct mig_error *err)
{
	int fds[LAB_MAX_VCPUS];
	bool restored = false;
	int r;

	for (uint32_t i = 0; i < vm->nr_vcpus; i++) {
		fds[i] = vm->vcpus[i]->fd;
		restored |= vm->vcpus[i]->core.state == VCPU_RESTORED;
	}
	if (restored) {
		/* kvmclock last, just before the vCPUs run (KERNEL-UAPI §9). */
		r = x86_vm_clock_resume(vm->vm_fd, fds, (int)vm->nr_vcpus, vm->loaded_vm.data,
					vm->loaded_vm.len, err);
		if (r < 0)
			return r;
		if (vm->mem->core.state == MEM_LOADED) {
			r = mig_device_step(&vm->mem->core, MEM_LOGGING, err);
			if (r < 0)
				return r;
		}
	}
	for (uint32_t i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu_dev *v = vm->vcpus[i];

		if (v->core.state == VCPU_RUNNING)
			continue;
		if (v->core.state == VCPU_SAVED)
			/* Tell a guest that uses kvmclock it was stopped; harmless if not. */
			ioctl(v->fd, KVM_KVMCLOCK_CTRL, 0);
		r = mig_device_step(&v->core, VCPU_RUNNING, err);
		if (r < 0)
			return r;
	}
	return 0;
}

/*
 * Container: u64 magic, u32 version, u32 nr_vcpus, u64 vm blob length, the VM
 * blob, then per vCPU a u64 length and its blob (docs/vcpu-state.md).
 */
struct state_head {
	uint64_t magic;
	uint32_t version;
	uint32_t nr_vcpus;
};
_Static_assert(sizeof(struct state_head) == 16, "state container header");

int lab_vm_save_state(struct lab_vm *vm, struct mig_buf *out, struct mig_error *err)
{
	struct state_head h = { STATE_MAGIC, STATE_VERSION, vm->nr_vcpus };
	struct mig_buf vmb = { 0 };
	uint64_t len;
	int r;

	for (uint32_t i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu_dev *v = vm->vcpus[i];

		if (v->core.state != VCPU_QUIESCED && v->core.state != VCPU_SAVED)
			return mig_error_set(err, -EBUSY, "vCPU %u is %s: pause the VM before saving",
					     i, mig_device_state_name(&v->core));
	}
	for (uint32_t i = 0; i < vm->nr_vcpus; i++) {
		if (vm->vcpus[i]->core.state == VCPU_SAVED)
			continue;
		r = mig_device_step(&vm->vcpus[i]->core, VCPU_SAVED, err);
		if (r < 0)
			return mig_error_prefix(err, "saving vCPU %u", i);
	}
	r = x86_vm_state_save(vm->vm_fd, &vmb, err);
	if (r < 0)
		goto out;
	len = vmb.len;
	if ((r = mig_buf_append(out, &h, sizeof(h))) < 0 ||
	    (r = mig_buf_append(out, &len, sizeof(len))) < 0 ||
	    (r = mig_buf_append(out, vmb.data, vmb.len)) < 0)
		goto out;
	for (uint32_t i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu_dev *v = vm->vcpus[i];

		len = v->saved.len;
		if ((r = mig_buf_append(out, &len, sizeof(len))) < 0 ||
		    (r = mig_device_save(&v->core, out, err)) < 0)
			goto out;
	}
out:
	mig_buf_free(&vmb);
	if (r < 0 && !err->code)
		mig_error_set(err, r, "saving VM state: %s", strerror(-r));
	return r;
}

/* Walks the container; with check set, validates each blob.  Fills the
 * offsets of the VM blob and of each vCPU blob. */
static int state_walk(const uint8_t *p, size_t n, uint32_t nr_vcpus, size_t *offs, size_t *lens,
		      struct mig_error *err)
{
	struct state_head h;
	size_t pos = sizeof(h);
	int r;

	if (n < sizeof(h))
		return mig_error_set(err, -EINVAL, "VM state: %zu bytes, shorter than its "
				     "16-byte header", n);
	memcpy(&h, p, sizeof(h));
	if (h.magic != STATE_MAGIC)
		return mig_error_set(err, -EINVAL, "VM state: bad magic %#llx (not a migratectl "
				     "VM state)", (unsigned long long)h.magic);
	if (h.version != STATE_VERSION)
		return mig_error_set(err, -EPROTO, "VM state: container version %u, this build "
				     "reads version %u", h.version, STATE_VERSION);
	if (h.nr_vcpus != nr_vcpus)
		return mig_error_set(err, -EINVAL, "VM state holds %u vCPUs, this VM has %u",
				     h.nr_vcpus, nr_vcpus);
	for (uint32_t i = 0; i <= nr_vcpus; i++) {
		uint64_t len;

		if (n - pos < sizeof(len))
			return mig_error_set(err, -EINVAL, "VM state truncated at %s length "
					     "(offset %zu of %zu)", i ? "a vCPU blob" : "the VM blob",
					     pos, n);
		memcpy(&len, p + pos, sizeof(len));
		pos += sizeof(len);
		if (len > n - pos)
			return mig_error_set(err, -EINVAL, "VM state: blob %u claims %llu bytes, "
					     "only %zu remain", i, (unsigned long long)len, n - pos);
		offs[i] = pos;
		lens[i] = (size_t)len;
		r = i ? x86_vcpu_state_validate(p + pos, (size_t)len, err) :
			x86_vm_state_validate(p + pos, (size_t)len, err);
		if (r < 0)
			return i ? mig_error_prefix(err, "vCPU %u", i - 1) : r;
		pos += (size_t)len;
	}
	if (pos != n)
		return mig_error_set(err, -EINVAL, "VM state: %zu trailing bytes", n - pos);
	return 0;
}

int lab_vm_validate_state(const uint8_t *p, size_t n, uint32_t nr_vcpus, struct mig_error *err)
{
	size_t offs[LAB_MAX_VCPUS + 1], lens[LAB_MAX_VCPUS + 1];

	if (nr_vcpus > LAB_MAX_VCPUS)
		return mig_error_set(err, -EINVAL, "%u vCPUs, at most %u", nr_vcpus, LAB_MAX_VCPUS);
	return state_walk(p, n, nr_vcpus, offs, lens, err);
}

int lab_vm_load_state(struct lab_vm *vm, const uint8_t *p, size_t n, struct mig_error *err)
{
	size_t offs[LAB_MAX_VCPUS + 1], lens[LAB_MAX_VCPUS + 1];
	int r;

	for (uint32_t i = 0; i < vm->nr_vcpus; i++)
		if (vm->vcpus[i]->core.state != VCPU_CREATED)
			return mig_error_set(err, -EBUSY, "vCPU %u is %s: state loads only into a "
					     "VM that never ran", i,
					     mig_device_state_name(&vm->vcpus[i]->core));
	/* Everything is checked before the first SET: a bad blob changes nothing. */
	r = state_walk(p, n, vm->nr_vcpus, offs, lens, err);
	if (r < 0)
		return r;
	if (vm->mem->core.state != MEM_RECEIVING) {
		r = mig_device_step(&vm->mem->core, MEM_RECEIVING, err);
		if (r < 0)
			return r;
	}
	r = mig_device_step(&vm->mem->core, MEM_LOADED, err);
	if (r < 0)
		return r;
	r = x86_vm_state_load(vm->vm_fd, p + offs[0], lens[0], err);
	if (r < 0)
		return r;
	vm->loaded_vm.len = 0;
	r = mig_buf_append(&vm->loaded_vm, p + offs[0], lens[0]);
	if (r < 0)
		return mig_error_set(err, r, "out of memory");
	for (uint32_t i = 0; i < vm->nr_vcpus; i++) {
		struct mig_device *d = &vm->vcpus[i]->core;

		r = mig_device_step(d, VCPU_RESTORING, err);
		if (r < 0)
			return r;
		r = mig_device_load(d, p + offs[i + 1], lens[i + 1], err);
		if (r < 0) {
			mig_device_step(d, VCPU_FAILED, NULL);
			return mig_error_prefix(err, "loading vCPU %u", i);
		}
		r = mig_device_step(d, VCPU_RESTORED, err);
		if (r < 0)
			return r;
	}
	return 0;
}

uint8_t *lab_vm_ram(struct lab_vm *vm, uint64_t *ret_bytes)
{
	if (ret_bytes)
		*ret_bytes = vm->mem->ram_bytes;
	return vm->mem->ram;
}

/* Bits set in [first, first + n): whole words at a time, as the final sync
 * runs while the VM is stopped. */
static uint64_t count_bits(const uint64_t *bm, uint64_t first, uint64_t n)
{
	uint64_t c = 0, end = first + n;

	while (first < end) {
		uint64_t w = first / 64, lo = first % 64;
		uint64_t hi = end - w * 64 < 64 ? end - w * 64 : 64;
		uint64_t mask = (hi == 64 ? ~0ULL : (1ULL << hi) - 1) & ~((1ULL << lo) - 1);

		c += (uint64_t)__builtin_popcountll(bm[w] & mask);
		first = w * 64 + hi;
	}
	return c;
}

/*
 * The guest is the dirty log's oracle: it counts the pages it stamps, each
 * after writing it.  Read after a sync returned, the count is A; read before
 * the next, B.  Stamps A+2..B were written after the log re-protected their
 * pages (stamp A+1 may have started before), so this sync must report them:
 * B-A-1 distinct pages of the working set in sequential order, at least half
 * that in random order (a window spans at most two permutations).  While the
 * vCPUs run, up to a PML buffer of writes per vCPU (512 on Intel) may not
 * have reached the log yet; a stopped vCPU has flushed its buffer.
 */
#define LAB_SYNC_SLACK 512

static int check_sync(struct lab_vm *vm, const uint64_t *before, bool live,
		      struct mig_error *err)
{
	for (uint32_t i = 0; vm->sync_marked && i < vm->nr_vcpus; i++) {
		uint64_t wss = va_read(vm, i, LAB_VA_WSS_PAGES);
		uint64_t first = va_read(vm, i, LAB_VA_REGION) >> GUEST_PAGE_SHIFT;
		uint64_t window = before[i] - vm->stamped[i], need, got;

		/* a count that went back means RAM was replaced (loaded): no
		 * claim; nor on a table that does not fit the guest */
		if (before[i] < vm->stamped[i] || window < 2 || !wss ||
		    first > vm->mem->nr_pages || wss > vm->mem->nr_pages - first)
			continue;
		need = vm->cfg.pattern == LAB_PATTERN_SEQ ? window - 1 : (window - 1) / 2;
		if (need > wss)
			need = wss;
		if (live)
			need = need > LAB_SYNC_SLACK ? need - LAB_SYNC_SLACK : 0;
		got = count_bits(vm->sync_new, first, wss);
		if (got < need)
			return mig_error_set(err, -EIO,
					     "the dirty log (%s) missed writes: vCPU %u stamped %llu "
					     "pages of its working set since the last sync, the log "
					     "reported %llu of them (at least %llu needed)",
					     mem_log_mode_to_string(vm->mem->mode), i,
					     (unsigned long long)window, (unsigned long long)got,
					     (unsigned long long)need);
	}
	return 0;
}

int lab_vm_dirty_sync(struct lab_vm *vm, uint64_t *bitmap, uint64_t *ret_count,
		      struct mig_error *err)
{
	uint64_t words = mem_bitmap_words(vm->mem), before[LAB_MAX_VCPUS];
	bool live = false;
	int r;

	for (uint32_t i = 0; i < vm->nr_vcpus; i++) {
		before[i] = va_read(vm, i, LAB_VA_PAGES);
		live |= vm->vcpus[i]->core.state == VCPU_RUNNING;
	}
	memset(vm->sync_new, 0, words * 8);
	r = mig_device_dirty_sync(&vm->mem->core, vm->sync_new, ret_count, err);
	/* even a failed sync may have taken reports from KVM: keep them */
	for (uint64_t w = 0; w < words; w++)
		bitmap[w] |= vm->sync_new[w];
	if (r < 0) {
		vm->sync_marked = false;
		return r;
	}
	r = check_sync(vm, before, live, err);
	for (uint32_t i = 0; i < vm->nr_vcpus; i++)
		vm->stamped[i] = va_read(vm, i, LAB_VA_PAGES);
	vm->sync_marked = true;
	return r;
}

uint64_t lab_vm_bitmap_words(const struct lab_vm *vm)
{
	return mem_bitmap_words(vm->mem);
}

const char *lab_vm_dirty_log_mode(const struct lab_vm *vm)
{
	return mem_log_mode_to_string(vm->mem->mode);
}

void lab_vm_stats(struct lab_vm *vm, struct lab_stats *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->nr_vcpus = vm->nr_vcpus;
	ret->all_filled = true;
	for (uint32_t i = 0; i < vm->nr_vcpus; i++) {
		struct lab_vcpu_stats *s = &ret->vcpu[i];
		struct vcpu_dev *v = vm->vcpus[i];

		s->state = va_read(vm, i, LAB_VA_STATE);
		s->filled = va_read(vm, i, LAB_VA_FILLED);
		s->passes = va_read(vm, i, LAB_VA_PASS);
		s->pages = va_read(vm, i, LAB_VA_PAGES);
		s->errors = va_read(vm, i, LAB_VA_ERRORS);
		ret->passes += s->passes;
		ret->pages += s->pages;
		ret->filled += s->filled;
		ret->errors += s->errors;
		if (s->state != LAB_STATE_RUNNING)
			ret->all_filled = false;
		pthread_mutex_lock(&v->lock);
		if (v->fatal && !ret->fatal) {
			ret->fatal = v->fatal;
			snprintf(ret->fatal_msg, sizeof(ret->fatal_msg), "%s", v->fatal_msg);
		}
		pthread_mutex_unlock(&v->lock);
	}
	ret->error_reports = atomic_load(&vm->error_reports);
	ret->ring_full_exits = atomic_load(&vm->mem->ring_full_exits);
}

void lab_vm_ring_report(struct lab_vm *vm, char *out, size_t n)
{
	mem_ring_report(vm->mem, out, n);
}

int lab_vm_digest(struct lab_vm *vm, struct lab_digest *ret)
{
	return ram_digest(vm->mem->ram, vm->mem->ram_bytes, ret);
}

int lab_vm_digest_until(struct lab_vm *vm, const atomic_bool *stop, struct lab_digest *ret)
{
	return ram_digest_until(vm->mem->ram, vm->mem->ram_bytes, stop, ret);
}

int lab_vm_handle_io(struct lab_vm *vm, struct vcpu_dev *v, uint16_t port, uint8_t val)
{
	uint64_t ticks, ns;

	(void)val;
	switch (port) {
	case LAB_PORT_FILL_DONE:
		return 0;     /* the guest's state word says so too: stats read that */
	case LAB_PORT_ERROR:
		atomic_fetch_add(&vm->error_reports, 1);
		return 0;
	case LAB_PORT_SLEEP:
		ticks = va_read(vm, v->index, LAB_VA_SLEEP_TICKS);
		/* ticks / kHz = ms; the guest caps a request at 1024 pages' worth */
		ns = ticks > (1ULL << 40) ? IO_SLEEP_MAX_NS : ticks * 1000000ULL / vm->tsc_khz;
		vcpu_wait(v, ns < IO_SLEEP_MAX_NS ? ns : IO_SLEEP_MAX_NS);
		return 0;
	case LAB_PORT_IDLE:
		vcpu_wait(v, IO_IDLE_NS);
		return 0;
	case LAB_PORT_PANIC:
		vcpu_set_fatal(v, -EPROTO, "vCPU %u: the guest payload rejected the VMM's table",
			       v->index);
		return -EPROTO;
	default:
		vcpu_set_fatal(v, -EPROTO, "vCPU %u: write to unknown port %#x", v->index, port);
		return -EPROTO;
	}
}

bool lab_vm_is_running(struct lab_vm *vm)
{
	for (uint32_t i = 0; i < vm->nr_vcpus; i++)
		if (vm->vcpus[i]->core.state != VCPU_RUNNING)
			return false;
	return vm->nr_vcpus > 0;
}

struct mig_device *lab_vm_device(struct lab_vm *vm, enum mig_dev_class cls, unsigned index)
{
	if (cls == MIG_DEV_MEMORY && index == 0)
		return &vm->mem->core;
	if (cls == MIG_DEV_VCPU && index < vm->nr_vcpus)
		return &vm->vcpus[index]->core;
	return NULL;
}
