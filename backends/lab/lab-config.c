// SPDX-License-Identifier: MIT
/*
 * Lab VM configuration: defaults, validation with errors that say what to
 * fix, the "key=value,..." spec parser and the enum name tables.  Nothing
 * here touches /dev/kvm, so all of it is unit-tested without KVM.
 */
#include <migrate/control.h>
#include <migrate/lab.h>
#include "util.h"
#include <migrate/parse.h>
#if HAVE_VFIO
#include "vfio/vfio.h"
#else
#define VFIO_ST_N 1   /* no state to name (0 is never one): vfio-fail names none */
static const char *vfio_state_name(int s) { (void)s; return ""; }
#endif

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/*
 * The first LAB_SYSTEM_BYTES (2 MiB) of guest RAM hold the page tables, the
 * guest code and the parameter table; the working set lives above it.  Guest
 * pages are 2 MiB (1 GiB pages fault as reserved under PVM), hence the RAM
 * granularity.
 */
#define LAB_MEM_ALIGN     (2ULL << 20)
#define LAB_MEM_MIN       (4ULL << 20)
#define LAB_MEM_MAX       (64ULL << 30)
#define LAB_VCPUS_MIN     1
#define LAB_WSS_ALIGN     4096ULL
/* KVM wants a power-of-two ring of at least one page of 16-byte entries,
 * at most KVM_DIRTY_RING_MAX_ENTRIES. */
#define LAB_RING_MIN      256U
#define LAB_RING_MAX      65536U
/* Any fixed non-zero value: runs are reproducible unless a seed is given. */
#define LAB_DEFAULT_SEED  0x6d6967726174652dULL

static const char *const lab_pattern_table[_LAB_PATTERN_MAX] = {
	[LAB_PATTERN_SEQ]    = "seq",
	[LAB_PATTERN_RANDOM] = "random",
};

static const char *const lab_dirty_log_table[_LAB_DIRTY_LOG_MAX] = {
	[LAB_DIRTY_LOG_BITMAP] = "bitmap",
	[LAB_DIRTY_LOG_RING]   = "ring",
};

static const char *const lab_ram_table[_LAB_RAM_MAX] = {
	[LAB_RAM_ANON]  = "anon",
	[LAB_RAM_MEMFD] = "memfd",
};

MIG_STRING_TABLE(lab_pattern, enum lab_pattern, lab_pattern_table)
MIG_STRING_TABLE(lab_ram, enum lab_ram, lab_ram_table)
MIG_STRING_TABLE(lab_dirty_log, enum lab_dirty_log, lab_dirty_log_table)

void lab_config_default(struct lab_config *cfg)
{
	*cfg = (struct lab_config) {
		.mem_bytes = LAB_DEFAULT_MEM,
		.vcpus = LAB_DEFAULT_VCPUS,
		.wss_bytes = LAB_DEFAULT_WSS,
		.pattern = LAB_PATTERN_SEQ,
		.rate = 0,
		.dirty_log = LAB_DIRTY_LOG_BITMAP,
		.seed = LAB_DEFAULT_SEED,
		.force_classic = false,
		.ring_entries = 0,
		.vfio = 0,
		.vfio_flags = 7,
		.vfio_rate = LAB_VFIO_DEFAULT_RATE,
		.sev_ready_ms = LAB_SEV_DEFAULT_READY_MS,
		.sev_flip_ms = LAB_SEV_DEFAULT_FLIP_MS,
	};
}

static uint64_t dma_area(const struct lab_config *cfg)
{
	return ALIGN_UP((uint64_t)cfg->vfio * LAB_VFIO_DMA_BYTES, 2ULL << 20);
}

uint64_t lab_config_work_bytes(const struct lab_config *cfg)
{
	uint64_t taken = LAB_SYSTEM_BYTES + dma_area(cfg);

	return cfg->mem_bytes > taken ? cfg->mem_bytes - taken : 0;
}

/* "64 MiB", "3 KiB" or "12345 bytes": exact, in the largest unit that divides. */
static const char *fmt_size(char *buf, size_t len, uint64_t v)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB" };
	int u = -1;

	while (u + 1 < (int)ARRAY_SIZE(units) && v && !(v & 1023)) {
		v >>= 10;
		u++;
	}
	if (u < 0)
		snprintf(buf, len, "%" PRIu64 " bytes", v);
	else
		snprintf(buf, len, "%" PRIu64 " %s", v, units[u]);
	return buf;
}

/* The errnos a test may have a sim VFIO device answer with (vfio-fail). */
static const struct { const char *name; int err; } errnos[] = {
	{ "EIO", EIO }, { "ENOMEM", ENOMEM }, { "EBUSY", EBUSY }, { "EINVAL", EINVAL },
	{ "EFAULT", EFAULT }, { "ENODEV", ENODEV }, { "EPERM", EPERM },
};

int lab_config_check(const struct lab_config *cfg, struct mig_error *err)
{
	char a[32], b[32], c[32];

	if (cfg->mem_bytes % LAB_MEM_ALIGN || cfg->mem_bytes < LAB_MEM_MIN ||
	    cfg->mem_bytes > LAB_MEM_MAX)
		return mig_error_set(err, -EINVAL,
			"guest memory (mem) is %s: it must be a multiple of 2 MiB from 4 MiB to 64 GiB; "
			"give a size such as 1G or 512M",
			fmt_size(a, sizeof(a), cfg->mem_bytes));
	if (cfg->vcpus < LAB_VCPUS_MIN || cfg->vcpus > LAB_MAX_VCPUS)
		return mig_error_set(err, -EINVAL,
			"vcpus is %" PRIu32 ": it must be from %d to %d; give a vCPU count in that range",
			cfg->vcpus, LAB_VCPUS_MIN, LAB_MAX_VCPUS);
	if (cfg->vfio > LAB_VFIO_MAX)
		return mig_error_set(err, -EINVAL,
			"vfio is %" PRIu32 ": a lab VM has at most %d sim VFIO devices",
			cfg->vfio, LAB_VFIO_MAX);
	if (cfg->vfio && !HAVE_VFIO)
		return mig_error_set(err, -ENOTSUP,
			"vfio=%" PRIu32 ": this build has no VFIO class (built with -Dvfio=disabled)",
			cfg->vfio);
	if (!(cfg->vfio_flags & 1) || (cfg->vfio_flags & ~7U))
		return mig_error_set(err, -EINVAL,
			"vfio-flags is %" PRIu32 ": the device's VFIO_MIGRATION_* bits, STOP_COPY (1) "
			"and any of P2P (2) and PRE_COPY (4); e.g. vfio-flags=7", cfg->vfio_flags);
	if (cfg->mdev[0] && !HAVE_VFIO)
		return mig_error_set(err, -ENOTSUP,
			"mdev=%s: this build has no VFIO class (built with -Dvfio=disabled)",
			cfg->mdev);
	if (cfg->ccw > LAB_CCW_MAX)
		return mig_error_set(err, -EINVAL,
			"ccw is %" PRIu32 ": a lab VM has at most %d channel I/O subchannels",
			cfg->ccw, LAB_CCW_MAX);
	if (cfg->msi > LAB_MSI_MAX)
		return mig_error_set(err, -EINVAL,
			"msi is %" PRIu32 ": a lab VM has at most %d MSI devices", cfg->msi,
			LAB_MSI_MAX);
	if (cfg->ccw && !HAVE_CCW)
		return mig_error_set(err, -ENOTSUP,
			"ccw=%" PRIu32 ": this build has no channel I/O class (built with "
			"-Dccw=disabled)", cfg->ccw);
	if (cfg->sev && cfg->vcpus < 2)
		return mig_error_set(err, -EINVAL,
			"sev with %" PRIu32 " vCPU: an SEV lab guest needs 2 or more (vCPU 0 plays "
			"its kernel, the others run the workload); give vcpus=2", cfg->vcpus);
	if (cfg->sev && !HAVE_SEV)
		return mig_error_set(err, -ENOTSUP,
			"sev=%s: this build has no SEV class (built with -Dsev=disabled)",
			cfg->sev == LAB_SEV_SIM ? "sim" : "kernel");
	if (cfg->vfio_v1 > cfg->vfio)
		return mig_error_set(err, -EINVAL,
			"vfio-v1 is %" PRIu32 ": more v1 devices than the %" PRIu32 " vfio devices; "
			"raise vfio or lower vfio-v1", cfg->vfio_v1, cfg->vfio);
	if (cfg->vfio_fail_err && ((cfg->vfio_fail_where >> 4) >= cfg->vfio ||
				   cfg->vfio_fail_from >= VFIO_ST_N || cfg->vfio_fail_to >= VFIO_ST_N ||
				   !(cfg->vfio_fail_where & (MIG_LAB_FAIL_SOURCE | MIG_LAB_FAIL_DEST))))
		return mig_error_set(err, -EINVAL,
			"vfio-fail names device %u of %" PRIu32 "; give a device the VM has",
			cfg->vfio_fail_where >> 4, cfg->vfio);
	if (cfg->vfio && lab_config_work_bytes(cfg) < (2ULL << 20))
		return mig_error_set(err, -EINVAL,
			"guest memory (mem) is %s: too small for %" PRIu32 " VFIO devices, whose DMA "
			"takes %s at its top; raise mem",
			fmt_size(a, sizeof(a), cfg->mem_bytes), cfg->vfio,
			fmt_size(b, sizeof(b), dma_area(cfg)));
	if (cfg->vfio && cfg->wss_bytes > lab_config_work_bytes(cfg))
		return mig_error_set(err, -EINVAL,
			"working set (wss) is %s: it must be from 0 to %s (mem %s minus the 2 MiB the "
			"guest reserves for its page tables and code and the %s its VFIO devices' DMA "
			"takes); lower wss or raise mem",
			fmt_size(a, sizeof(a), cfg->wss_bytes),
			fmt_size(b, sizeof(b), lab_config_work_bytes(cfg)),
			fmt_size(c, sizeof(c), cfg->mem_bytes), fmt_size(c, sizeof(c), dma_area(cfg)));
	if (cfg->wss_bytes > cfg->mem_bytes - LAB_SYSTEM_BYTES)
		return mig_error_set(err, -EINVAL,
			"working set (wss) is %s: it must be from 0 to %s (mem %s minus the 2 MiB the "
			"guest reserves for its page tables and code); lower wss or raise mem",
			fmt_size(a, sizeof(a), cfg->wss_bytes),
			fmt_size(b, sizeof(b), cfg->mem_bytes - LAB_SYSTEM_BYTES),
			fmt_size(c, sizeof(c), cfg->mem_bytes));
	/* Rounding up stays within the limit: mem - 2 MiB is page aligned. */
	if (cfg->wss_bytes % LAB_WSS_ALIGN)
		return mig_error_set(err, -EINVAL,
			"working set (wss) is %s: it must be a multiple of 4 KiB (one guest page), "
			"from 0 to %s; round it, e.g. to %s",
			fmt_size(a, sizeof(a), cfg->wss_bytes),
			fmt_size(b, sizeof(b), cfg->mem_bytes - LAB_SYSTEM_BYTES),
			fmt_size(c, sizeof(c), ALIGN_UP(cfg->wss_bytes, LAB_WSS_ALIGN)));
	if (!lab_pattern_to_string(cfg->pattern))
		return mig_error_set(err, -EINVAL,
			"write pattern is %d: it must be seq or random", (int)cfg->pattern);
	if (!lab_dirty_log_to_string(cfg->dirty_log))
		return mig_error_set(err, -EINVAL,
			"dirty-log mode is %d: it must be bitmap or ring", (int)cfg->dirty_log);
	if (cfg->ring_entries &&
	    (cfg->ring_entries < LAB_RING_MIN || cfg->ring_entries > LAB_RING_MAX ||
	     (cfg->ring_entries & (cfg->ring_entries - 1))))
		return mig_error_set(err, -EINVAL,
			"dirty ring size is %" PRIu32 " entries: it must be 0 (default) or a power "
			"of two from %u to %u; pick one such as 4096",
			cfg->ring_entries, LAB_RING_MIN, LAB_RING_MAX);
	return 0;
}

enum spec_key {
	SPEC_MEM,
	SPEC_VCPUS,
	SPEC_WSS,
	SPEC_PATTERN,
	SPEC_RATE,
	SPEC_DIRTY_LOG,
	SPEC_VFIO,
	SPEC_VFIO_FLAGS,
	SPEC_VFIO_RATE,
	SPEC_VFIO_LOG,
	SPEC_VFIO_FAIL,
	SPEC_VFIO_V1,
	SPEC_CCW,
	SPEC_MSI,
	SPEC_MDEV,
	SPEC_SEV,
	SPEC_SEV_REPORT,
	SPEC_SEV_READY,
	SPEC_SEV_UNREADY,
	SPEC_SEV_FLIP,
	SPEC_VFIO_OVERSHOOT,
	SPEC_RAM,
	_SPEC_MAX,
};

static const char *const spec_key_table[_SPEC_MAX] = {
	[SPEC_MEM]       = "mem",
	[SPEC_VCPUS]     = "vcpus",
	[SPEC_WSS]       = "wss",
	[SPEC_PATTERN]   = "pattern",
	[SPEC_RATE]      = "rate",
	[SPEC_DIRTY_LOG] = "dirty-log",
	[SPEC_VFIO]      = "vfio",
	[SPEC_VFIO_FLAGS] = "vfio-flags",
	[SPEC_VFIO_RATE] = "vfio-rate",
	[SPEC_VFIO_LOG]  = "vfio-log",
	[SPEC_VFIO_FAIL] = "vfio-fail",
	[SPEC_VFIO_V1]   = "vfio-v1",
	[SPEC_CCW]       = "ccw",
	[SPEC_MSI]       = "msi",
	[SPEC_MDEV]      = "mdev",
	[SPEC_SEV]       = "sev",
	[SPEC_SEV_REPORT] = "sev-report",
	[SPEC_SEV_READY] = "sev-ready",
	[SPEC_SEV_UNREADY] = "sev-unready",
	[SPEC_SEV_FLIP]  = "sev-flip",
	[SPEC_VFIO_OVERSHOOT] = "vfio-overshoot",
	[SPEC_RAM]       = "ram",
};

static MIG_STRING_TABLE_FROM(spec_key, spec_key_table)

#define SPEC_KEYS "mem, vcpus, wss, pattern, rate, dirty-log, vfio, vfio-flags, vfio-rate, " \
	"vfio-log, vfio-fail, vfio-v1, ccw, msi, mdev, sev, sev-report, sev-ready, sev-unready, " \
	"sev-flip, vfio-overshoot, ram"

/* "src|dst:DEV:FROM:TO:ERRNO[:error]" */
static int parse_fail(const char *val, struct lab_config *cfg)
{
	char side[8], from[16], to[16], err[16], land[8] = "";
	unsigned dev;
	int f = -1, t = -1, e = -1, n;

	n = sscanf(val, "%7[a-z]:%u:%15[a-z_2]:%15[a-z_2]:%15[A-Z0-9]:%7[a-z]", side, &dev, from,
		   to, err, land);
	if (n < 5 || (strcmp(side, "src") && strcmp(side, "dst")) || dev >= LAB_VFIO_MAX ||
	    (n == 6 && strcmp(land, "error")))
		return -EINVAL;
	for (int i = 1; i < VFIO_ST_N; i++) {
		if (!strcmp(from, vfio_state_name(i)))
			f = i;
		if (!strcmp(to, vfio_state_name(i)))
			t = i;
	}
	for (unsigned i = 0; i < ARRAY_SIZE(errnos); i++)
		if (!strcmp(err, errnos[i].name))
			e = errnos[i].err;
	if (f < 0 || t < 0 || e < 0)
		return -EINVAL;
	cfg->vfio_fail_from = (uint8_t)f;
	cfg->vfio_fail_to = (uint8_t)t;
	cfg->vfio_fail_err = (uint8_t)e;
	cfg->vfio_fail_where = (uint8_t)((dev << 4) | (side[0] == 's' ? MIG_LAB_FAIL_SOURCE :
								  MIG_LAB_FAIL_DEST) |
					 (n == 6 ? MIG_LAB_FAIL_ERROR : 0));
	return 0;
}

/* Applies one key=value to cfg; errors name the key, the value and the fix. */
static int spec_apply(struct lab_config *cfg, enum spec_key key, const char *val,
		      struct mig_error *err)
{
	uint64_t v;
	int r;

	switch (key) {
	case SPEC_MEM:
	case SPEC_WSS:
		r = parse_size(val, &v);
		if (r == -ERANGE)
			return mig_error_set(err, -EINVAL,
				"%s=%.64s is too large; give a size up to 64G",
				spec_key_table[key], val);
		if (r < 0)
			return mig_error_set(err, -EINVAL,
				"%s=%.64s is not a size; give a whole number of bytes with an optional "
				"K, M, G or T suffix (binary units, e.g. %s=%s)",
				spec_key_table[key], val, spec_key_table[key],
				key == SPEC_MEM ? "1G" : "64M");
		if (key == SPEC_MEM)
			cfg->mem_bytes = v;
		else
			cfg->wss_bytes = v;
		return 0;
	case SPEC_VCPUS:
		r = parse_u64(val, LAB_VCPUS_MIN, LAB_MAX_VCPUS, &v);
		if (r < 0)
			return mig_error_set(err, -EINVAL,
				"vcpus=%.64s is not a vCPU count from %d to %d; give e.g. vcpus=2",
				val, LAB_VCPUS_MIN, LAB_MAX_VCPUS);
		cfg->vcpus = (uint32_t)v;
		return 0;
	case SPEC_PATTERN:
		r = lab_pattern_from_string(val);
		if (r < 0)
			return mig_error_set(err, -EINVAL,
				"pattern=%.64s is not a write pattern; give pattern=seq or pattern=random",
				val);
		cfg->pattern = (enum lab_pattern)r;
		return 0;
	case SPEC_RATE:
		r = parse_rate(val, &v);
		if (r < 0)
			return mig_error_set(err, -EINVAL,
				"rate=%.64s is not a rate; give rate=max or a positive number of pages "
				"per second (e.g. rate=10000)", val);
		cfg->rate = v;
		return 0;
	case SPEC_RAM:
		r = lab_ram_from_string(val);
		if (r < 0)
			return mig_error_set(err, -EINVAL,
				"ram=%.64s is not a kind of guest RAM; give ram=anon or ram=memfd", val);
		cfg->ram = (enum lab_ram)r;
		return 0;
	case SPEC_DIRTY_LOG:
		r = lab_dirty_log_from_string(val);
		if (r < 0)
			return mig_error_set(err, -EINVAL,
				"dirty-log=%.64s is not a dirty-log mode; give dirty-log=bitmap or "
				"dirty-log=ring", val);
		cfg->dirty_log = (enum lab_dirty_log)r;
		return 0;
	case SPEC_VFIO:
		if (parse_u64(val, 0, LAB_VFIO_MAX, &v) < 0)
			return mig_error_set(err, -EINVAL,
				"vfio=%.64s is not a device count from 0 to %d; give e.g. vfio=3",
				val, LAB_VFIO_MAX);
		cfg->vfio = (uint32_t)v;
		return 0;
	case SPEC_VFIO_FLAGS:
		if (parse_u64(val, 1, 7, &v) < 0 || !(v & 1))
			return mig_error_set(err, -EINVAL,
				"vfio-flags=%.64s is not a set of VFIO_MIGRATION_* bits: STOP_COPY (1) "
				"and any of P2P (2) and PRE_COPY (4), e.g. vfio-flags=3", val);
		cfg->vfio_flags = (uint32_t)v;
		return 0;
	case SPEC_VFIO_RATE:
		if (parse_u64(val, 0, 1000000, &v) < 0)
			return mig_error_set(err, -EINVAL,
				"vfio-rate=%.64s is not a DMA rate; give pages a second from 0 to "
				"1000000, e.g. vfio-rate=2000", val);
		cfg->vfio_rate = v;
		return 0;
	case SPEC_VFIO_LOG:
		if (strcmp(val, "on") && strcmp(val, "off") && strcmp(val, "lose"))
			return mig_error_set(err, -EINVAL,
				"vfio-log=%.64s: give vfio-log=on (the devices log their DMA), "
				"vfio-log=off (they cannot) or vfio-log=lose (a source's devices "
				"lose their log once: its first report fails with EIO)", val);
		cfg->vfio_no_log = !strcmp(val, "off");
		cfg->vfio_lose_log = !strcmp(val, "lose");
		return 0;
	case SPEC_VFIO_OVERSHOOT:
		if (strcmp(val, "on") && strcmp(val, "off"))
			return mig_error_set(err, -EINVAL,
				"vfio-overshoot=%.64s: give on (a source's devices produce "
				"pre-copy data beyond what they announce) or off", val);
		cfg->vfio_overshoot = !strcmp(val, "on");
		return 0;
	case SPEC_MDEV:
		if (!*val || strlen(val) >= sizeof(cfg->mdev) ||
		    strspn(val, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") !=
		    strlen(val))
			return mig_error_set(err, -EINVAL,
				"mdev=%.64s is not an mdev type name (up to %zu letters, digits, _ "
				"and -, e.g. mdev=mtty-2)", val, sizeof(cfg->mdev) - 1);
		snprintf(cfg->mdev, sizeof(cfg->mdev), "%s", val);
		return 0;
	case SPEC_SEV:
		if (strcmp(val, "sim") && strcmp(val, "kernel") && strcmp(val, "off"))
			return mig_error_set(err, -EINVAL,
				"sev=%.64s: give sev=sim (the psp-sim firmware), sev=kernel (this "
				"host's SEV firmware) or sev=off", val);
		cfg->sev = !strcmp(val, "sim") ? LAB_SEV_SIM :
			   !strcmp(val, "kernel") ? LAB_SEV_KERNEL : LAB_SEV_OFF;
		return 0;
	case SPEC_SEV_REPORT:
		if (strcmp(val, "auto") && strcmp(val, "hypercall") && strcmp(val, "doorbell"))
			return mig_error_set(err, -EINVAL,
				"sev-report=%.64s: give auto, hypercall (KVM_HC_MAP_GPA_RANGE) or "
				"doorbell (a port with the same arguments)", val);
		cfg->sev_report = !strcmp(val, "hypercall") ? LAB_SEV_REPORT_HYPERCALL :
				  !strcmp(val, "doorbell") ? LAB_SEV_REPORT_DOORBELL :
				  LAB_SEV_REPORT_AUTO;
		return 0;
	case SPEC_SEV_READY:
	case SPEC_SEV_UNREADY:
	case SPEC_SEV_FLIP:
		if (parse_duration_ms(val, 1, &v) < 0 || v > 3600000)
			return mig_error_set(err, -EINVAL,
				"%s=%.64s is not a duration up to 1h; give e.g. %s=200ms",
				spec_key_table[key], val, spec_key_table[key]);
		*(key == SPEC_SEV_READY ? &cfg->sev_ready_ms : key == SPEC_SEV_UNREADY ?
		  &cfg->sev_unready_ms : &cfg->sev_flip_ms) = (uint32_t)v;
		return 0;
	case SPEC_MSI:
		if (parse_u64(val, 0, LAB_MSI_MAX, &v) < 0)
			return mig_error_set(err, -EINVAL,
				"msi=%.64s is not an MSI device count from 0 to %d; give e.g. msi=4 "
				"(each raises %d LPIs)", val, LAB_MSI_MAX, LAB_MSI_EVENTS);
		cfg->msi = (uint32_t)v;
		return 0;
	case SPEC_CCW:
		if (parse_u64(val, 0, LAB_CCW_MAX, &v) < 0)
			return mig_error_set(err, -EINVAL,
				"ccw=%.64s is not a subchannel count from 0 to %d; give e.g. ccw=2",
				val, LAB_CCW_MAX);
		cfg->ccw = (uint32_t)v;
		return 0;
	case SPEC_VFIO_V1:
		if (parse_u64(val, 0, LAB_VFIO_MAX, &v) < 0)
			return mig_error_set(err, -EINVAL,
				"vfio-v1=%.64s is not a device count from 0 to %d; give e.g. vfio-v1=1 "
				"(of the vfio devices, the last this many speak protocol v1)", val,
				LAB_VFIO_MAX);
		cfg->vfio_v1 = (uint32_t)v;
		return 0;
	case SPEC_VFIO_FAIL:
		if (parse_fail(val, cfg) < 0)
			return mig_error_set(err, -EINVAL,
				"vfio-fail=%.64s: give SIDE:DEVICE:FROM:TO:ERRNO[:error], e.g. "
				"vfio-fail=dst:0:resuming:stop:EIO (SIDE src or dst; the states as "
				"devices.md names them; ERRNO one of EIO, ENOMEM, EBUSY, EINVAL, "
				"EFAULT, ENODEV, EPERM; error: the device lands in ERROR)", val);
		return 0;
	case _SPEC_MAX:
		break;
	}
	return mig_error_set(err, -EINVAL, "internal error: lab spec key %d", (int)key);
}

/*
 * Works on a copy of cfg and stores it only when the whole spec is valid,
 * so a bad spec changes nothing.  Relations between keys (wss <= mem - 2 MiB)
 * are left to lab_config_check(): the caller may still change other values.
 */
int lab_spec_parse(const char *spec, struct lab_config *cfg, struct mig_error *err)
{
	_cleanup_free_ char *copy = NULL;
	struct lab_config next = *cfg;
	bool seen[_SPEC_MAX] = { false };
	char *item, *rest;

	if (!spec || !*spec)
		return mig_error_set(err, -EINVAL,
			"lab spec is empty; give key=value pairs separated by commas, "
			"e.g. mem=1G,vcpus=2,wss=64M (keys: " SPEC_KEYS ")");
	copy = strdup(spec);
	if (!copy)
		return mig_error_set(err, -ENOMEM, "lab spec: out of memory");

	for (item = copy; item; item = rest) {
		char *eq, *val;
		int key, r;

		rest = strchr(item, ',');
		if (rest)
			*rest++ = '\0';
		if (!*item)
			return mig_error_set(err, -EINVAL,
				"lab spec '%.128s' has an empty item (two commas, or a comma at "
				"either end); give key=value pairs separated by single commas", spec);
		eq = strchr(item, '=');
		if (!eq)
			return mig_error_set(err, -EINVAL,
				"lab spec item '%.64s' has no '='; write it as key=value (keys: "
				SPEC_KEYS ")", item);
		*eq = '\0';
		val = eq + 1;
		key = spec_key_from_string(item);
		if (key < 0)
			return mig_error_set(err, -EINVAL,
				"lab spec has unknown key '%.64s'; valid keys are " SPEC_KEYS, item);
		if (seen[key])
			return mig_error_set(err, -EINVAL,
				"lab spec gives '%s' more than once; give each key at most once",
				spec_key_table[key]);
		seen[key] = true;
		r = spec_apply(&next, (enum spec_key)key, val, err);
		if (r < 0) {
			mig_error_prefix(err, "lab spec");
			return r;
		}
	}
	*cfg = next;
	return 0;
}

int lab_spec_check(const char *spec, struct mig_vm_summary *ret, struct mig_error *err)
{
	struct lab_config cfg;
	int r;

	lab_config_default(&cfg);
	r = spec ? lab_spec_parse(spec, &cfg, err) : 0;   /* NULL: the defaults */
	if (r >= 0)
		r = lab_config_check(&cfg, err);
	if (r >= 0)
		*ret = (struct mig_vm_summary){
			.vcpus = cfg.vcpus, .mem_bytes = cfg.mem_bytes, .workload_bytes = cfg.wss_bytes,
		};
	return r;
}

void lab_to_wire(const struct lab_config *c, struct mig_lab_wire *w)
{
	memset(w, 0, sizeof(*w));
	w->mem_bytes = c->mem_bytes;
	w->wss_bytes = c->wss_bytes;
	w->rate = c->rate;
	w->seed = c->seed;
	w->vcpus = c->vcpus;
	/* 0 is never a value on the wire */
	w->pattern = (uint32_t)c->pattern + 1;
	w->dirty_log = (uint32_t)c->dirty_log + 1;
	w->ring_entries = c->ring_entries;
	w->vfio = c->vfio;
	w->vfio_v1 = c->vfio_v1;
	w->ccw = (uint16_t)c->ccw;
	w->msi = (uint16_t)c->msi;
	w->sev = (uint8_t)(c->sev + 1);
	w->sev_report = (uint8_t)(c->sev_report + 1);
	w->ram = (uint8_t)(c->ram + 1);
	w->sev_ready_ms = c->sev_ready_ms;
	w->sev_unready_ms = c->sev_unready_ms;
	w->sev_flip_ms = c->sev_flip_ms;
	memcpy(w->mdev, c->mdev, sizeof(w->mdev));
	w->vfio_flags = c->vfio_flags;
	w->vfio_opts = (c->vfio_no_log ? MIG_LAB_VFIO_NO_LOG : 0) |
		       (c->vfio_lose_log ? MIG_LAB_VFIO_LOSE_LOG : 0) |
		       (c->vfio_overshoot ? MIG_LAB_VFIO_OVERSHOOT : 0);
	w->vfio_rate = c->vfio_rate;
	w->vfio_fail_from = c->vfio_fail_from;
	w->vfio_fail_to = c->vfio_fail_to;
	w->vfio_fail_err = c->vfio_fail_err;
	w->vfio_fail_where = c->vfio_fail_where;
}

int lab_from_wire(const struct mig_lab_wire *w, struct lab_config *c, struct mig_error *err)
{
	lab_config_default(c);
	if (w->pattern < 1 || w->pattern > _LAB_PATTERN_MAX || w->dirty_log < 1 ||
	    w->dirty_log > _LAB_DIRTY_LOG_MAX)
		return mig_error_set(err, -EPROTO, "VM description: pattern %u / dirty log %u unknown",
				     w->pattern, w->dirty_log);
	c->mem_bytes = w->mem_bytes;
	c->wss_bytes = w->wss_bytes;
	c->rate = w->rate;
	c->seed = w->seed;
	c->vcpus = w->vcpus;
	c->pattern = (enum lab_pattern)(w->pattern - 1);
	c->dirty_log = (enum lab_dirty_log)(w->dirty_log - 1);
	c->ring_entries = w->ring_entries;
	if (w->vfio_opts & ~(MIG_LAB_VFIO_NO_LOG | MIG_LAB_VFIO_LOSE_LOG | MIG_LAB_VFIO_OVERSHOOT))
		return mig_error_set(err, -EPROTO, "VM description: VFIO options %#x: this agent "
				     "does not know them; upgrade it", w->vfio_opts);
	c->ccw = w->ccw;
	c->msi = w->msi;
	if (w->sev < 1 || w->sev > _LAB_SEV_MAX || w->sev_report < 1 ||
	    w->sev_report > _LAB_SEV_REPORT_MAX)
		return mig_error_set(err, -EPROTO, "VM description: SEV mode %u / report %u "
				     "unknown; upgrade this agent", w->sev, w->sev_report);
	if (w->ram < 1 || w->ram > _LAB_RAM_MAX)
		return mig_error_set(err, -EPROTO, "VM description: RAM kind %u unknown; upgrade "
				     "this agent", w->ram);
	c->ram = (enum lab_ram)(w->ram - 1);
	c->sev = (enum lab_sev)(w->sev - 1);
	c->sev_report = (enum lab_sev_report)(w->sev_report - 1);
	c->sev_ready_ms = w->sev_ready_ms;
	c->sev_unready_ms = w->sev_unready_ms;
	c->sev_flip_ms = w->sev_flip_ms;
	if (memchr(w->mdev, 0, sizeof(w->mdev)) == NULL)
		return mig_error_set(err, -EPROTO, "VM description: the mdev type is not a string");
	memcpy(c->mdev, w->mdev, sizeof(c->mdev));
	c->vfio_v1 = w->vfio_v1;
	c->vfio = w->vfio;
	c->vfio_flags = w->vfio_flags;
	c->vfio_no_log = w->vfio_opts & MIG_LAB_VFIO_NO_LOG;
	c->vfio_lose_log = w->vfio_opts & MIG_LAB_VFIO_LOSE_LOG;
	c->vfio_overshoot = w->vfio_opts & MIG_LAB_VFIO_OVERSHOOT;
	c->vfio_rate = w->vfio_rate;
	c->vfio_fail_from = w->vfio_fail_from;
	c->vfio_fail_to = w->vfio_fail_to;
	c->vfio_fail_err = w->vfio_fail_err;
	c->vfio_fail_where = w->vfio_fail_where;
	return lab_config_check(c, err);
}
