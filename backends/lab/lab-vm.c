// SPDX-License-Identifier: MIT
/*
 * The lab VM: a KVM guest hosted by this process, whatever its
 * architecture: its RAM, vCPUs and sim devices, the workload's split over
 * the vCPUs, the doorbells, the dirty log's check against the guest's own
 * count, and the backend's ops.  The first 2 MiB of RAM hold the VMM's
 * table, page tables, stacks and payload (and on arm64 the GIC's tables);
 * the rest is the workload's.  What differs per architecture (the system
 * area, the vCPUs' first registers, the VM-wide devices, the exits) is
 * lab-x86.c's or arm64/lab-arm64.c's (lab-internal.h).
 */
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <migrate/control.h>

#include "lab-abi.h"
#include "lab-internal.h"
#include "util.h"

#define IO_SLEEP_MAX_NS (200ULL * 1000 * 1000)
#define IO_IDLE_NS      (20ULL * 1000 * 1000)

const struct lab_config *lab_vm_config(const struct lab_vm *vm)
{
	return &vm->cfg;
}

static uint8_t *va_host(struct lab_vm *vm, unsigned i)
{
	return vm->mem->ram + vm->table + LAB_TBL_VCPUS + (uint64_t)i * LAB_VA_SIZE;
}

uint64_t lab_va_read(struct lab_vm *vm, unsigned i, unsigned off)
{
	return __atomic_load_n((uint64_t *)(va_host(vm, i) + off), __ATOMIC_RELAXED);
}

void lab_va_write(struct lab_vm *vm, unsigned i, unsigned off, uint64_t v)
{
	__atomic_store_n((uint64_t *)(va_host(vm, i) + off), v, __ATOMIC_RELAXED);
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

static const struct mig_vm_ops lab_vm_ops;

/* The sim VFIO devices: each DMA-writes its own LAB_VFIO_DMA_BYTES in the
 * area at the top of guest RAM that no vCPU's share includes. */
static int vfio_create(struct lab_vm *vm, struct mig_error *err)
{
#if HAVE_VFIO
	uint64_t area = LAB_SYSTEM_BYTES + lab_config_work_bytes(&vm->cfg);

	for (uint32_t i = 0; i < vm->cfg.vfio; i++) {
		struct lab_vfio *x = calloc(1, sizeof(*x));
		struct vfio_range dma = { area + i * LAB_VFIO_DMA_BYTES, LAB_VFIO_DMA_BYTES };
		struct vfio_sim_opts o = {
			.flags = vm->cfg.vfio_flags, .table_bytes = 256 * 1024,
			.no_log = vm->cfg.vfio_no_log, .ram = vm->mem->ram, .dma = dma,
			.dma_rate = vm->cfg.vfio_rate, .seed = (uint32_t)vm->cfg.seed + i,
		};
		unsigned side = vm->cfg.destination ? MIG_LAB_FAIL_DEST : MIG_LAB_FAIL_SOURCE;

		if (!vm->cfg.destination) {
			o.lose_log = vm->cfg.vfio_lose_log;
			o.overshoot = vm->cfg.vfio_overshoot ? LAB_VFIO_OVERSHOOT : 0;
		}

		if (vm->cfg.vfio_fail_err && (vm->cfg.vfio_fail_where >> 4) == i &&
		    (vm->cfg.vfio_fail_where & side)) {
			o.fail_from = vm->cfg.vfio_fail_from;
			o.fail_to = vm->cfg.vfio_fail_to;
			o.fail_errno = vm->cfg.vfio_fail_err;
			o.fail_at = vm->cfg.vfio_fail_where & MIG_LAB_FAIL_ERROR ? VFIO_ST_ERROR :
				    vm->cfg.vfio_fail_from;
		}
		char label[32];
		int r;

		if (!x)
			return mig_error_set(err, -ENOMEM, "out of memory");
		vm->vfio[vm->nr_vfio++] = x;
		x->is_v1 = i >= vm->cfg.vfio - vm->cfg.vfio_v1;
		snprintf(label, sizeof(label), "sim%u%s", i, x->is_v1 ? " v1" : "");
		if (x->is_v1) {
			r = vfio_sim_v1_init(&x->v1, &o, err);
			x->model = &x->v1.sim;
			if (r >= 0)
				r = vfio_dev_init(&x->dev, i, &vfio_sim_v1_backend, &x->v1, label,
						  err);
		} else {
			r = vfio_sim_init(&x->sim, &o, err);
			x->model = &x->sim;
			if (r >= 0)
				r = vfio_dev_init(&x->dev, i, &vfio_sim_backend, &x->sim, label,
						  err);
		}
		if (r >= 0)
			r = vfio_sim_start_dma(x->model);
		if (r < 0)
			return mig_error_set(err, r, "sim VFIO device %u: %s", i, strerror(-r));
		x->dev.ranges[0] = dma;
		x->dev.nr_ranges = 1;
	}
	return 0;
#else
	(void)err;
	return vm->cfg.vfio ? -ENOTSUP : 0;
#endif
}

/* The sim channel I/O subchannels: their "guest" starts programs at once
 * on a source, once started on a destination. */
static int ccw_create(struct lab_vm *vm, struct mig_error *err)
{
#if HAVE_CCW
	for (uint32_t i = 0; i < vm->cfg.ccw; i++) {
		struct ccw_sim *c = calloc(1, sizeof(*c));

		if (!c)
			return mig_error_set(err, -ENOMEM, "out of memory");
		/* short programs only: tests/test-ccw.c halts and clears long ones */
		ccw_sim_init(c, i, 1000, 0, !vm->cfg.destination);
		vm->ccw[vm->nr_ccw++] = c;
		if (ccw_sim_start(c) < 0)
			return mig_error_set(err, -EAGAIN, "ccw %u: no thread", i);
	}
	return 0;
#else
	(void)err;
	return vm->cfg.ccw ? -ENOTSUP : 0;
#endif
}

static void ccw_destroy(struct lab_vm *vm)
{
#if HAVE_CCW
	for (uint32_t i = 0; i < vm->nr_ccw; i++) {
		ccw_sim_fini(vm->ccw[i]);
		free(vm->ccw[i]);
	}
#endif
	vm->nr_ccw = 0;
}

/* A real mediated device of the configured type: the first of this host's
 * that no one holds (its group opens only once). */
static int mdev_attach(struct lab_vm *vm, struct mig_error *err)
{
#if HAVE_VFIO
	char pattern[160];
	glob_t g;
	int r = -ENODEV;

	if (!vm->cfg.mdev[0])
		return 0;
	snprintf(pattern, sizeof(pattern), "/sys/class/mdev_bus/*/mdev_supported_types/*-%s/devices/*",
		 vm->cfg.mdev);
	/* the type directory is DRIVER-NAME ("mtty-2"), or NAME itself */
	if (glob(pattern, 0, NULL, &g) != 0) {
		snprintf(pattern, sizeof(pattern), "/sys/class/mdev_bus/*/mdev_supported_types/%s/devices/*",
			 vm->cfg.mdev);
		if (glob(pattern, 0, NULL, &g) != 0)
			return mig_error_set(err, -ENODEV, "mdev=%s: this host has no mediated device "
					     "of that type (create one under /sys/class/mdev_bus)",
					     vm->cfg.mdev);
	}
	vm->mdev = calloc(1, sizeof(*vm->mdev));
	if (!vm->mdev) {
		globfree(&g);
		return mig_error_set(err, -ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < g.gl_pathc && r < 0; i++) {
		char real[PATH_MAX];
		struct mig_error e = { 0 };

		if (!realpath(g.gl_pathv[i], real))
			continue;
		r = vfio_kernel_open(&vm->mdev->k, real, &e);
	}
	globfree(&g);
	if (r < 0) {
		free(vm->mdev);
		vm->mdev = NULL;
		return mig_error_set(err, -EBUSY, "mdev=%s: every mediated device of that type is "
				     "held by another VM", vm->cfg.mdev);
	}
	r = vfio_dev_init(&vm->mdev->dev, 0, &vfio_kernel_backend, &vm->mdev->k,
			  vm->mdev->k.name, err);
	if (r >= 0) {
		uint32_t flags = vm->mdev->dev.desc.flags;

		r = vfio_kernel_describe(&vm->mdev->k, &vm->mdev->dev.desc, err);
		vm->mdev->dev.desc.flags = flags;
	}
	/* it reaches all of guest RAM, at IOVA = guest physical address */
	vm->mdev->dev.ranges[0] = (struct vfio_range){ 0, vm->cfg.mem_bytes };
	vm->mdev->dev.nr_ranges = 1;
	if (r >= 0)
		r = vfio_kernel_map_ram(&vm->mdev->k, vm->mem->ram, 0, vm->cfg.mem_bytes, err);
	return r;
#else
	(void)err;
	return vm->cfg.mdev[0] ? -ENOTSUP : 0;
#endif
}

static void mdev_detach(struct lab_vm *vm)
{
#if HAVE_VFIO
	if (!vm->mdev)
		return;
	vfio_dev_fini(&vm->mdev->dev);
	vfio_kernel_close(&vm->mdev->k);
	free(vm->mdev);
	vm->mdev = NULL;
#else
	(void)vm;
#endif
}

static void vfio_destroy(struct lab_vm *vm)
{
	for (uint32_t i = 0; i < vm->nr_vfio; i++) {
#if HAVE_VFIO
		struct lab_vfio *x = vm->vfio[i];

		vfio_dev_fini(&x->dev);
		if (x->model == &x->v1.sim)
			vfio_sim_v1_fini(&x->v1);
		else if (x->model)
			vfio_sim_fini(&x->sim);
#endif
		free(vm->vfio[i]);
	}
	vm->nr_vfio = 0;
}

/* The vCPU statistics lab_kvm() sums, in the order of its fields.  The
 * halt-polling times are from Linux 5.16 on; a kernel without one reads 0
 * (halt_ns_valid says whether they are counted). */
enum { KS_EXITS, KS_PF, KS_HALT_EXITS, KS_POLL_OK, KS_POLL_TRIED, KS_POLL_OK_NS, KS_POLL_FAIL_NS,
       KS_WAIT_NS };
static const char *const stat_vcpu_names[LAB_KVM_VCPU_STATS] = {
	[KS_EXITS] = "exits", [KS_PF] = "pf_taken", [KS_HALT_EXITS] = "halt_exits",
	[KS_POLL_OK] = "halt_successful_poll", [KS_POLL_TRIED] = "halt_attempted_poll",
	[KS_POLL_OK_NS] = "halt_poll_success_ns", [KS_POLL_FAIL_NS] = "halt_poll_fail_ns",
	[KS_WAIT_NS] = "halt_wait_ns",
};

/* KVM's statistics files, if the kernel has them: best effort.  What
 * lab_kvm() sums is looked up once; every vCPU's file has the same
 * descriptors. */
static void stats_open(struct lab_vm *vm)
{
	bool ok = kvm_stats_open(vm->fds.vm_fd, &vm->stats_vm, NULL) >= 0;
	uint32_t most = vm->stats_vm.data_bytes;

	for (uint32_t i = 0; i < LAB_MAX_VCPUS; i++)
		vm->stats_vcpu[i].fd = -1;
	for (uint32_t i = 0; ok && i < vm->nr_vcpus; i++) {
		ok = kvm_stats_open(vm->vcpus[i]->fd, &vm->stats_vcpu[i], NULL) >= 0;
		if (ok && vm->stats_vcpu[i].data_bytes > most)
			most = vm->stats_vcpu[i].data_bytes;
	}
	if (ok) {
		vm->stat_tlb = kvm_stats_find(&vm->stats_vm, "remote_tlb_flush");
		for (unsigned k = 0; k < LAB_KVM_VCPU_STATS; k++)
			vm->stat_vcpu[k] = kvm_stats_find(&vm->stats_vcpu[0], stat_vcpu_names[k]);
		vm->stats_buf = malloc(most);
		ok = vm->stats_buf != NULL;
	}
	vm->stats_ok = ok;
}

static void stats_close(struct lab_vm *vm)
{
	if (!vm->stats_vm.stats && !vm->stats_ok)
		return;
	kvm_stats_close(&vm->stats_vm);
	for (uint32_t i = 0; i < vm->nr_vcpus; i++)
		kvm_stats_close(&vm->stats_vcpu[i]);
	free(vm->stats_buf);
	vm->stats_buf = NULL;
	vm->stats_ok = false;
}

/* One pread per file (PRECOPY samples every 200 ms). */
static void lab_kvm(struct mig_vm *m, struct mig_vm_kvm *ret)
{
	struct lab_vm *vm = container_of(m, struct lab_vm, base);
	uint64_t v[LAB_KVM_VCPU_STATS] = { 0 }, tlb = 0;
	bool ok = vm->stats_ok && kvm_stats_sample(&vm->stats_vm, vm->stats_buf, NULL) >= 0;

	if (ok)
		tlb = kvm_stats_value(&vm->stats_vm, vm->stats_buf, vm->stat_tlb);
	for (uint32_t i = 0; ok && i < vm->nr_vcpus; i++) {
		ok = kvm_stats_sample(&vm->stats_vcpu[i], vm->stats_buf, NULL) >= 0;
		for (unsigned k = 0; ok && k < LAB_KVM_VCPU_STATS; k++)
			v[k] += kvm_stats_value(&vm->stats_vcpu[i], vm->stats_buf, vm->stat_vcpu[k]);
	}
	*ret = (struct mig_vm_kvm){
		.valid = ok, .exits = v[KS_EXITS], .page_faults = v[KS_PF],
		.halt_exits = v[KS_HALT_EXITS], .remote_tlb_flushes = tlb,
		.halt_successful_polls = v[KS_POLL_OK], .halt_attempted_polls = v[KS_POLL_TRIED],
		.halt_poll_success_ns = v[KS_POLL_OK_NS], .halt_poll_fail_ns = v[KS_POLL_FAIL_NS],
		.halt_wait_ns = v[KS_WAIT_NS],
		.halt_ns_valid = ok && vm->stat_vcpu[KS_WAIT_NS] >= 0 &&
				 vm->stat_vcpu[KS_POLL_OK_NS] >= 0 && vm->stat_vcpu[KS_POLL_FAIL_NS] >= 0,
		.vcpus = ok ? vm->nr_vcpus : 0,
	};
}

int lab_vm_create(const struct lab_config *cfg, struct lab_vm **ret, struct mig_error *err)
{
	struct mig_device *arch_devs[LAB_ARCH_DEVS_MAX];
	unsigned nr_arch = 0, n;
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
	vm->fds.vm_fd = -1;
	vm->fds.kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->fds.kvm_fd < 0) {
		r = mig_error_set(err, -errno, "cannot open /dev/kvm: %s (is KVM enabled on this "
				  "host, and may this user open /dev/kvm?)", strerror(errno));
		goto fail;
	}
	api = ioctl(vm->fds.kvm_fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION) {
		r = mig_error_set(err, -ENOTSUP, "KVM API version %d, this build needs %d", api,
				  KVM_API_VERSION);
		goto fail;
	}
	vm->fds.vm_fd = ioctl(vm->fds.kvm_fd, KVM_CREATE_VM, 0);
	if (vm->fds.vm_fd < 0) {
		r = mig_error_set(err, -errno, "KVM_CREATE_VM: %s", strerror(errno));
		goto fail;
	}
	/* Memory first: the dirty ring must be enabled before any vCPU exists. */
	r = mem_dev_create(vm->fds.kvm_fd, vm->fds.vm_fd, lab_arch_ram_base(), cfg->mem_bytes,
			   cfg->dirty_log == LAB_DIRTY_LOG_RING,
			   cfg->force_classic, cfg->ring_entries,
			   cfg->ram == LAB_RAM_MEMFD ? MEM_RAM_SHARED |
			   /* a destination's RAM waits for SETUP: it may be handed over */
			   (cfg->destination ? MEM_RAM_LAZY : 0) : 0, &vm->mem, err);
	if (r < 0)
		goto fail;
	vm->sync_new = calloc(mem_bitmap_words(vm->mem), 8);
	if (!vm->sync_new) {
		r = mig_error_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	r = lab_arch_create(vm, err);
	if (r < 0)
		goto fail;
	vm->vhost = (struct vcpu_host){ .fds = &vm->fds, .exits = &lab_arch_exits, .exit_arg = vm };
	for (uint32_t i = 0; i < cfg->vcpus; i++) {
		r = vcpu_dev_create(&vm->vhost, i, &vm->vcpus[i], err);
		if (r < 0)
			goto fail;
		vm->nr_vcpus = i + 1;
		vm->fds.vcpu_fds[i] = vm->vcpus[i]->fd;
		vm->fds.nr_vcpus = i + 1;
		r = mem_ring_attach(vm->mem, i, vm->vcpus[i]->fd, err);
		if (r < 0)
			goto fail;
	}
	stats_open(vm);
	r = lab_arch_vcpus_made(vm, arch_devs, &nr_arch, err);
	if (r >= 0)
		r = vfio_create(vm, err);
	if (r >= 0)
		r = ccw_create(vm, err);
	if (r >= 0)
		r = mdev_attach(vm, err);
	if (r < 0)
		goto fail;
	/* memory, the VM-wide devices, the vCPUs in order, the sim devices */
	n = 0;
	vm->devs[n++] = &vm->mem->core;
	for (unsigned i = 0; i < nr_arch; i++)
		vm->devs[n++] = arch_devs[i];
	for (uint32_t i = 0; i < vm->nr_vcpus; i++)
		vm->devs[n++] = &vm->vcpus[i]->core;
#if HAVE_VFIO
	for (uint32_t i = 0; i < vm->nr_vfio; i++)
		vm->devs[n++] = &vm->vfio[i]->dev.dev;
#endif
#if HAVE_CCW
	for (uint32_t i = 0; i < vm->nr_ccw; i++)
		vm->devs[n++] = &vm->ccw[i]->dev;
#endif
	vm->base = (struct mig_vm){
		.ops = &lab_vm_ops, .ram = vm->mem->ram, .ram_bytes = vm->mem->ram_bytes,
		.devices = vm->devs, .nr_devices = n,
	};
#if HAVE_VFIO
	if (vm->mdev)
		vm->devs[vm->base.nr_devices++] = &vm->mdev->dev.dev;
#endif
	*ret = vm;
	return 0;

fail:
	lab_vm_destroy(vm);   /* each part goes if it was made */
	return r;
}

void lab_vcpu_ran(void *arg, struct vcpu_dev *v, const struct mig_vcpu_run *e)
{
	struct lab_vm *vm = arg;

	(void)v;
	mig_vm_run_event(&vm->base, e);
}

void lab_vm_destroy(struct lab_vm *vm)
{
	if (!vm)
		return;
	/* A destination in post-copy: a vCPU waiting for a page that KVM reads
	 * from kernel mode cannot be kicked out of KVM_RUN (docs/devices.md
	 * §13), so the userfaultfd goes first and lets every waiter go.  Each
	 * running vCPU is held before (kicked, not waited for): a waiter then
	 * ends the instruction it was in on a page of zeros and leaves, and
	 * runs no further guest code on them. */
	if (vm->mem && vm->mem->postcopy) {
		for (uint32_t i = 0; i < vm->nr_vcpus; i++)
			if (vm->vcpus[i] && vm->vcpus[i]->core.state == VCPU_RUNNING)
				mig_device_step(&vm->vcpus[i]->core, VCPU_HELD, NULL);
		mem_postcopy_end(vm->mem);
	}
	/* vCPU and DMA threads first: nothing may touch RAM once it is unmapped. */
	mdev_detach(vm);
	ccw_destroy(vm);
	vfio_destroy(vm);
	for (uint32_t i = 0; i < vm->nr_vcpus; i++)
		vcpu_dev_destroy(vm->vcpus[i]);
	mig_vm_run_end(&vm->base);
	stats_close(vm);
	lab_arch_destroy(vm);
	mem_dev_destroy(vm->mem);
	free(vm->sync_new);
	if (vm->fds.vm_fd >= 0)
		close(vm->fds.vm_fd);
	if (vm->fds.kvm_fd >= 0)
		close(vm->fds.kvm_fd);
	free(vm);
}

static void put64(uint8_t *p, uint64_t off, uint64_t v)
{
	memcpy(p + off, &v, sizeof(v));
}

void lab_table_write(uint8_t *t, unsigned nr_vcpus, const struct lab_work *work)
{
	memset(t + LAB_TBL_VCPUS, 0, (uint64_t)nr_vcpus * LAB_VA_SIZE);
	put64(t, LAB_TBL_OFF_MAGIC, LAB_TBL_MAGIC);
	put64(t, LAB_TBL_OFF_VERSION, LAB_TBL_VERSION);
	put64(t, LAB_TBL_OFF_NR_VCPUS, nr_vcpus);
	for (unsigned i = 0; i < nr_vcpus; i++) {
		uint8_t *va = t + LAB_TBL_VCPUS + (uint64_t)i * LAB_VA_SIZE;

		put64(va, LAB_VA_ID, i);
		put64(va, LAB_VA_REGION, work[i].region);
		put64(va, LAB_VA_REGION_PAGES, work[i].region_pages);
		put64(va, LAB_VA_WSS_PAGES, work[i].wss_pages);
		put64(va, LAB_VA_PATTERN, work[i].pattern);
		put64(va, LAB_VA_SEED, work[i].seed);
		put64(va, LAB_VA_TSC_PER_PAGE, work[i].ticks_per_page);
	}
}

/* Each vCPU fills and stamps only its own share: no two vCPUs write the
 * same page, so a stamp can only change through a fault of the VMM. */
static void split_work(struct lab_vm *vm, struct lab_work *work)
{
	uint64_t work_pages = lab_config_work_bytes(&vm->cfg) >> GUEST_PAGE_SHIFT;
	uint64_t wss_pages = vm->cfg.wss_bytes >> GUEST_PAGE_SHIFT;
	uint64_t n = vm->nr_vcpus, next = lab_arch_ram_base() + LAB_SYSTEM_BYTES;
	uint64_t per_vcpu_rate = 0;
	/* an SEV guest's vCPU 0 plays its kernel and has no share (lab-abi.h) */
	unsigned first = vm->cfg.sev ? 1 : 0;

	memset(work, 0, sizeof(*work) * n);
	for (unsigned i = 0; i < first; i++)
		work[i] = (struct lab_work){ .region = next, .seed = vm->cfg.seed };
	n -= first;
	if (vm->cfg.rate) {
		per_vcpu_rate = vm->cfg.rate / n;
		if (!per_vcpu_rate)
			per_vcpu_rate = 1;
	}
	for (unsigned i = 0; i < n; i++) {
		uint64_t region = work_pages / n + (i < work_pages % n);

		work[first + i] = (struct lab_work){
			.region = next, .region_pages = region,
			.wss_pages = wss_pages / n + (i < wss_pages % n),
			.pattern = vm->cfg.pattern == LAB_PATTERN_RANDOM, .seed = vm->cfg.seed,
			.ticks_per_page = per_vcpu_rate ? lab_arch_ticks_hz(vm) / per_vcpu_rate : 0,
		};
		next += region << GUEST_PAGE_SHIFT;
	}
}

int lab_vm_start(struct lab_vm *vm, struct mig_error *err)
{
	struct lab_work work[LAB_MAX_VCPUS];
	int r;

	split_work(vm, work);
	r = lab_arch_boot(vm, work, err);
	for (uint32_t i = 0; r >= 0 && i < vm->nr_vcpus; i++)
		r = mig_device_step(&vm->vcpus[i]->core, VCPU_RUNNING, err);
#if HAVE_VFIO
	/* the devices work once the guest does */
	for (uint32_t i = 0; r >= 0 && i < vm->nr_vfio; i++)
		vfio_sim_arm(vm->vfio[i]->model);
#endif
	return r;
}

int lab_vm_pause(struct lab_vm *vm, struct mig_error *err)
{
	struct mig_walk w = { 0 };

	return mig_vm_walk(&vm->base, MIG_STAGE_QUIESCE, &w, err);
}

int lab_vm_resume(struct lab_vm *vm, struct mig_error *err)
{
	struct mig_walk w = { 0 };

	/* a VM that was loaded starts; one that was paused or saved rolls back */
	if (vm->nr_vcpus && vm->vcpus[0]->core.state == VCPU_RESTORED)
		return mig_vm_walk(&vm->base, MIG_STAGE_START, &w, err);
	return mig_vm_walk(&vm->base, MIG_STAGE_ROLLBACK, &w, err);
}

int lab_vm_save_state(struct lab_vm *vm, struct mig_buf *out, struct mig_error *err)
{
	struct mig_walk w = { 0 };
	int r = mig_vm_walk(&vm->base, MIG_STAGE_SAVE, &w, err);

	return r < 0 ? r : mig_vm_state_save(&vm->base, out, err);
}

int lab_vm_load_state(struct lab_vm *vm, const uint8_t *p, size_t n, struct mig_error *err)
{
	struct mig_walk w = { 0 };
	int r;

	for (uint32_t i = 0; i < vm->nr_vcpus; i++)
		if (vm->vcpus[i]->core.state != VCPU_CREATED)
			return mig_error_set(err, -EBUSY, "vCPU %u is %s: state loads only into a "
					     "VM that never ran", i,
					     mig_device_state_name(&vm->vcpus[i]->core));
	r = mig_vm_walk(&vm->base, MIG_STAGE_RECEIVE, &w, err);
	return r < 0 ? r : mig_vm_state_load(&vm->base, p, n, &w, err);
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
		uint64_t wss = lab_va_read(vm, i, LAB_VA_WSS_PAGES);
		uint64_t first = (lab_va_read(vm, i, LAB_VA_REGION) - lab_arch_ram_base()) >>
				 GUEST_PAGE_SHIFT;
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
		before[i] = lab_va_read(vm, i, LAB_VA_PAGES);
		live |= vm->vcpus[i]->core.state == VCPU_RUNNING;
	}
	memset(vm->sync_new, 0, words * 8);
	r = mig_vm_devices_dirty_sync(&vm->base, vm->sync_new, ret_count, err);
	/* even a failed sync may have taken reports from KVM: keep them */
	for (uint64_t w = 0; w < words; w++)
		bitmap[w] |= vm->sync_new[w];
	if (r < 0) {
		vm->sync_marked = false;
		return r;
	}
	r = check_sync(vm, before, live, err);
	for (uint32_t i = 0; i < vm->nr_vcpus; i++)
		vm->stamped[i] = lab_va_read(vm, i, LAB_VA_PAGES);
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

		s->state = lab_va_read(vm, i, LAB_VA_STATE);
		s->filled = lab_va_read(vm, i, LAB_VA_FILLED);
		s->passes = lab_va_read(vm, i, LAB_VA_PASS);
		s->pages = lab_va_read(vm, i, LAB_VA_PAGES);
		s->errors = lab_va_read(vm, i, LAB_VA_ERRORS);
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
	ret->errors += lab_arch_errors(vm);
	ret->ring_full_exits = atomic_load(&vm->mem->ring_full_exits);
#if HAVE_VFIO
	/* a device's self-check errors count as the guest's */
	for (uint32_t i = 0; i < vm->nr_vfio; i++) {
		struct vfio_sim *s = vm->vfio[i]->model;

		pthread_mutex_lock(&s->lock);
		ret->errors += s->errors;
		pthread_mutex_unlock(&s->lock);
	}
#endif
#if HAVE_CCW
	for (uint32_t i = 0; i < vm->nr_ccw; i++) {
		struct ccw_sim *c = vm->ccw[i];

		pthread_mutex_lock(&c->lock);
		ret->errors += c->errors;
		pthread_mutex_unlock(&c->lock);
	}
#endif
}

void lab_vm_ring_report(struct lab_vm *vm, char *out, size_t n)
{
	mem_ring_report(vm->mem, out, n);
}

int lab_vm_digest(struct lab_vm *vm, struct mig_digest *ret)
{
	return mig_ram_digest(vm->mem->ram, vm->mem->ram_bytes, NULL, ret);
}

int lab_vm_digest_until(struct lab_vm *vm, const atomic_bool *stop, struct mig_digest *ret)
{
	return mig_ram_digest(vm->mem->ram, vm->mem->ram_bytes, stop, ret);
}

/* The guest payload's doorbells (lab-abi.h), from a vCPU thread. */
int lab_doorbell(struct lab_vm *vm, struct vcpu_dev *v, unsigned door)
{
	uint64_t ticks, ns, hz = lab_arch_ticks_hz(vm);

	switch (door) {
	case LAB_PORT_FILL_DONE:
		return 0;     /* the guest's state word says so too: stats read that */
	case LAB_PORT_ERROR:
		atomic_fetch_add(&vm->error_reports, 1);
		return 0;
	case LAB_PORT_SLEEP:
		ticks = lab_va_read(vm, v->index, LAB_VA_SLEEP_TICKS);
		/* the guest caps a request at 1024 pages' worth */
		ns = ticks > (1ULL << 34) ? IO_SLEEP_MAX_NS : ticks * 1000000000ULL / hz;
		/* asleep in KVM, as a guest's HLT: KVM counts its halts */
		vcpu_halt(v, ns < IO_SLEEP_MAX_NS ? ns : IO_SLEEP_MAX_NS);
		return 0;
	case LAB_PORT_IDLE:
		vcpu_halt(v, IO_IDLE_NS);
		return 0;
	case LAB_PORT_PANIC:
		vcpu_set_fatal(v, -EPROTO, "vCPU %u: the guest payload rejected the VMM's table",
			       v->index);
		return -EPROTO;
	default:
		return -ENOENT;
	}
}

/* A vCPU's dirty ring filled up: it cannot run until it is harvested and reset. */
int lab_ring_full(void *arg, struct vcpu_dev *v)
{
	struct lab_vm *vm = arg;
	struct mig_error err = { 0 };

	if (mem_ring_drain(vm->mem, v->index, &err) < 0) {
		vcpu_set_fatal(v, err.code, "vCPU %u: %s", v->index, err.msg);
		return err.code;
	}
	return 0;
}


bool lab_vm_is_running(struct lab_vm *vm)
{
	return vm->nr_vcpus > 0 && mig_vm_is_running(&vm->base);
}

struct mig_vm *lab_vm_mig(struct lab_vm *vm)
{
	return &vm->base;
}

struct lab_vm *lab_vm_from_mig(struct mig_vm *m)
{
	return m && m->ops == &lab_vm_ops ? container_of(m, struct lab_vm, base) : NULL;
}

/* ---- the backend's ops ---- */

static struct lab_vm *lab_of(struct mig_vm *m)
{
	return container_of(m, struct lab_vm, base);
}

static int lab_describe(struct mig_vm *m, uint8_t *out, size_t *ret_len, struct mig_error *err)
{
	struct mig_lab_wire w;

	(void)err;
	_Static_assert(sizeof(w) <= MIG_VM_DESC_MAX, "lab description");
	lab_to_wire(&lab_of(m)->cfg, &w);
	memcpy(out, &w, sizeof(w));
	*ret_len = sizeof(w);
	return 0;
}

static int lab_matches(struct mig_vm *m, const uint8_t *desc, size_t len, struct mig_error *err)
{
	struct mig_lab_wire have, want;

	lab_to_wire(&lab_of(m)->cfg, &have);
	if (len < sizeof(want))
		return mig_error_set(err, -EINVAL, "the source's VM description is %zu bytes, a lab "
				     "VM's is %zu", len, sizeof(want));
	for (size_t i = sizeof(want); i < len; i++)
		if (desc[i])
			return mig_error_set(err, -EINVAL, "the source's VM description goes on "
					     "past a lab VM's %zu bytes", sizeof(want));
	memcpy(&want, desc, sizeof(want));
	if (memcmp(&have, &want, sizeof(have)))
		return mig_error_set(err, -EINVAL, "the source's VM (%llu MiB, %u vCPUs, %u VFIO "
				     "devices) is not the one the destination prepared (%llu MiB, "
				     "%u vCPUs, %u VFIO devices)",
				     (unsigned long long)(want.mem_bytes >> 20), want.vcpus, want.vfio,
				     (unsigned long long)(have.mem_bytes >> 20), have.vcpus, have.vfio);
	return 0;
}

static int lab_dirty_sync(struct mig_vm *m, uint64_t *bitmap, uint64_t *ret_count,
			  struct mig_error *err)
{
	return lab_vm_dirty_sync(lab_of(m), bitmap, ret_count, err);
}

/* Whether the vCPUs' areas of the table are in RAM: in post-copy they may
 * not be yet, and reading one would wait for the page from the source. */
static bool table_present(struct lab_vm *vm)
{
	uint64_t first = (vm->table + LAB_TBL_VCPUS) >> GUEST_PAGE_SHIFT;
	uint64_t last = (vm->table + LAB_TBL_VCPUS + (uint64_t)vm->nr_vcpus * LAB_VA_SIZE - 1) >>
			GUEST_PAGE_SHIFT;

	for (uint64_t p = first; vm->nr_vcpus && p <= last; p++)
		if (!mig_vm_postcopy_present(&vm->base, p))
			return false;
	return true;
}

/* The guest's health, from its table; nothing (zeros) while its table is
 * still missing in post-copy: the caller, an engine or the agent's VM
 * list, must not hang on a page a broken link may never bring. */
static void lab_health(struct mig_vm *m, struct mig_vm_health *ret)
{
	struct lab_vm *vm = lab_of(m);
	struct lab_stats st;

	if (!table_present(vm)) {
		*ret = (struct mig_vm_health){ 0 };
		return;
	}
	lab_vm_stats(vm, &st);
	*ret = (struct mig_vm_health){
		.passes = st.passes, .progress = st.pages, .errors = st.errors,
		.has_progress = vm->cfg.wss_bytes != 0, .fatal = st.fatal,
	};
	str_copy(ret->fatal_msg, sizeof(ret->fatal_msg), st.fatal_msg);
}

static int lab_digest(struct mig_vm *m, const atomic_bool *stop, struct mig_digest *ret)
{
	return mig_ram_digest(m->ram, m->ram_bytes, stop, ret);
}

static void lab_diagnose(struct mig_vm *m, char *out, size_t n)
{
	char ring[96];

	mem_ring_report(lab_of(m)->mem, ring, sizeof(ring));
	snprintf(out, n, "%s%s", *ring ? "dirty-ring entries per vCPU, in all/last sync: " : "",
		 ring);
}

/* A real VFIO device (mdev=) maps guest RAM for its DMA, pinning the pages
 * the VM has now: a destination that adopted another memfd in their place
 * would leave the device reading and writing the old ones.  Such a VM's
 * RAM is not handed over. */
static int lab_ram_fd(struct mig_vm *m)
{
	struct lab_vm *vm = lab_of(m);

	return vm->mdev ? -1 : vm->mem->ram_fd;
}

static int lab_ram_adopt(struct mig_vm *m, int fd, struct mig_error *err)
{
	struct mem_dev *mem = lab_of(m)->mem;

	if (fd >= 0 && lab_of(m)->mdev)
		return mig_error_set(err, -EOPNOTSUPP, "mdev=%s maps this VM's RAM for its DMA: "
				     "RAM handed over would not be what the device reaches",
				     lab_of(m)->cfg.mdev);
	if (fd >= 0)
		return mem_adopt(mem, fd, err);
	if (!mem->populated)
		mem_populate(mem);
	return 0;
}

static void lab_destroy(struct mig_vm *m)
{
	lab_vm_destroy(lab_of(m));
}

static const struct mig_vm_ops lab_vm_ops = {
	.describe = lab_describe,
	.matches = lab_matches,
	.dirty_sync = lab_dirty_sync,
	.health = lab_health,
	.digest = lab_digest,
	.diagnose = lab_diagnose,
	.kvm = lab_kvm,
	.destroy = lab_destroy,
	.ram_fd = lab_ram_fd,
	.ram_adopt = lab_ram_adopt,
};

/* ---- the backend, as an agent uses it ---- */

/* A guest takes this long at most to fill its RAM after its start. */
#define LAB_FILL_TIMEOUT_MS 300000

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A VM of `spec`, started, once every vCPU filled its share of RAM: a
 * migration started right after moves a guest in its steady state. */
static int lab_backend_create(const char *spec, struct mig_vm **ret, struct mig_error *err)
{
	struct lab_config cfg;
	struct lab_vm *vm = NULL;
	uint64_t end;
	int r;

	lab_config_default(&cfg);
	r = spec && spec[0] ? lab_spec_parse(spec, &cfg, err) : 0;
	if (r >= 0)
		r = lab_config_check(&cfg, err);
	if (r >= 0)
		r = lab_vm_create(&cfg, &vm, err);
	if (r >= 0)
		r = lab_vm_start(vm, err);
	end = mono_ms() + LAB_FILL_TIMEOUT_MS;
	while (r >= 0) {
		struct lab_stats st;

		lab_vm_stats(vm, &st);
		if (st.fatal) {
			r = mig_error_set(err, st.fatal, "%s", st.fatal_msg);
			break;
		}
		if (st.all_filled)
			break;
		if (mono_ms() > end) {
			r = mig_error_set(err, -ETIMEDOUT, "the guest did not finish filling its RAM");
			break;
		}
		usleep(10000);
	}
	if (r < 0) {
		lab_vm_destroy(vm);
		return r;
	}
	*ret = &vm->base;
	return 0;
}

static int lab_backend_prepare(const uint8_t *desc, size_t len, struct mig_vm **ret,
			       struct mig_error *err)
{
	struct mig_lab_wire w;
	struct lab_config cfg;
	struct lab_vm *vm;
	int r;

	if (len != sizeof(w))
		return mig_error_set(err, -EINVAL, "a lab VM's description is %zu bytes, not %zu",
				     sizeof(w), len);
	memcpy(&w, desc, sizeof(w));
	r = lab_from_wire(&w, &cfg, err);
	cfg.destination = true;
	if (r >= 0)
		r = lab_vm_create(&cfg, &vm, err);
	if (r < 0)
		return r;
	*ret = &vm->base;
	return 0;
}

static void lab_backend_summary(struct mig_vm *m, struct mig_vm_summary *ret)
{
	const struct lab_config *c = &lab_of(m)->cfg;

	*ret = (struct mig_vm_summary){
		.vcpus = c->vcpus, .mem_bytes = c->mem_bytes, .workload_bytes = c->wss_bytes,
	};
}

const struct mig_vm_backend lab_backend = {
	.name = "lab",
	.create = lab_backend_create,
	.check_spec = lab_spec_check,
	.prepare = lab_backend_prepare,
	.summary = lab_backend_summary,
};
