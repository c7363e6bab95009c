// SPDX-License-Identifier: MIT
/*
 * x86 vCPU and VM-wide state: save, validate, load.  The blob format is
 * specified in docs/vcpu-state.md; keep the two in step.
 *
 * Layout: a 32-byte header, then TLV sections (u32 type, u32 length, payload
 * padded with zeros to 8 bytes).  Header and TLV fields are little-endian.
 * Payloads are the kernel's own structs, copied as KVM returns them: this code
 * only builds for x86_64 (little-endian), and the uapi structs are fixed-size
 * and padded explicitly, so their byte image is stable.
 *
 * Load never trusts the blob: it is parsed and every section checked first,
 * then compared with what this kernel can accept (XSAVE size, SREGS2, MSR
 * list, in-kernel LAPIC), and only then does the first SET ioctl run.  A SET
 * that fails after that leaves the vCPU half-loaded; the caller discards the
 * destination VM (KERNEL-UAPI §3.8), so there is no rollback here.
 */
#include <migrate/policy.h>
#include <migrate/vm.h>

#include "devices-internal.h"
#include "vcpu/x86-state.h"
#include "vcpu/vcpu-arch.h"

#include <endian.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include <linux/kvm.h>

#include "util.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	       "payloads are x86 kernel structs stored in host (little-endian) order");

#define STATE_MAGIC "MIGX86ST"
#define STATE_VERSION 1u

enum blob_kind {
	BLOB_KIND_VCPU = 1,
	BLOB_KIND_VM = 2,
};

struct state_header {
	uint8_t magic[8];       /* STATE_MAGIC, no NUL */
	uint32_t version;       /* STATE_VERSION; 0 is invalid */
	uint32_t kind;          /* enum blob_kind; 0 is invalid */
	uint32_t nr_sections;
	uint32_t reserved;      /* 0 */
	uint64_t total_len;     /* header + every section, padding included */
};
_Static_assert(sizeof(struct state_header) == 32, "header is 32 bytes on the wire");
_Static_assert(offsetof(struct state_header, version) == 8, "header layout");
_Static_assert(offsetof(struct state_header, nr_sections) == 16, "header layout");
_Static_assert(offsetof(struct state_header, total_len) == 24, "header layout");

struct section_header {
	uint32_t type;
	uint32_t len;           /* payload bytes, padding excluded */
};
_Static_assert(sizeof(struct section_header) == 8, "section header is 8 bytes");

#define SECTION_ALIGN 8u
/* A reader that does not know a type with this bit may skip the section. */
#define SECTION_SKIPPABLE 0x80000000u

enum section_type {
	/* vCPU blob */
	SEC_CPUID2 = 1,
	SEC_VCPU_EVENTS = 2,
	SEC_MP_STATE = 3,
	SEC_REGS = 4,
	SEC_XSAVE = 5,
	SEC_XCRS = 6,
	SEC_SREGS2 = 7,
	SEC_SREGS = 8,
	SEC_MSRS = 9,
	SEC_LAPIC = 10,
	SEC_DEBUGREGS = 11,
	SEC_TSC_OFFSET = 12,
	/* VM blob */
	SEC_CLOCK = 32,
	SEC_PIC_MASTER = 33,
	SEC_PIC_SLAVE = 34,
	SEC_IOAPIC = 35,
	SEC_PIT2 = 36,
	_SEC_MAX,
};

/*
 * Payload sizes are part of the wire format (docs/vcpu-state.md §3): a uapi
 * header whose struct changed size must not change the format silently.
 */
_Static_assert(sizeof(struct kvm_cpuid2) == 8 && sizeof(struct kvm_cpuid_entry2) == 40, "CPUID2");
_Static_assert(sizeof(struct kvm_vcpu_events) == 64, "VCPU_EVENTS");
_Static_assert(sizeof(struct kvm_mp_state) == 4, "MP_STATE");
_Static_assert(sizeof(struct kvm_regs) == 144, "REGS");
_Static_assert(sizeof(struct kvm_xsave) == 4096, "XSAVE");
_Static_assert(sizeof(struct kvm_xcrs) == 392, "XCRS");
_Static_assert(sizeof(struct kvm_sregs2) == 320, "SREGS2");
_Static_assert(sizeof(struct kvm_sregs) == 312, "SREGS");
_Static_assert(sizeof(struct kvm_msrs) == 8 && sizeof(struct kvm_msr_entry) == 16, "MSRS");
_Static_assert(sizeof(struct kvm_lapic_state) == 1024, "LAPIC");
_Static_assert(sizeof(struct kvm_debugregs) == 128, "DEBUGREGS");
_Static_assert(sizeof(struct kvm_clock_data) == 48, "CLOCK");
_Static_assert(sizeof(struct kvm_pic_state) == 16, "PIC");
_Static_assert(sizeof(struct kvm_ioapic_state) == 216, "IOAPIC");
_Static_assert(sizeof(struct kvm_pit_state2) == 112, "PIT2");

/* KVM_MAX_CPUID_ENTRIES is kernel-internal (arch/x86/include/asm/kvm_host.h). */
#define CPUID_MAX_ENTRIES 256u
/* Format limits, far above any kernel's list (about 40 here, ~150 with Hyper-V). */
#define MSR_MAX_ENTRIES 1024u
#define XSAVE_MIN_BYTES 4096u
#define XSAVE_MAX_BYTES (1u << 20)
/* KVM_{GET,SET}_MSRS refuse nmsrs >= MAX_IO_MSRS (256); stay well below. */
#define MSR_IO_CHUNK 128u

/* From arch/x86/include/asm/msr-index.h, which is not uapi. */
#define MSR_IA32_TSC 0x10u
#define MSR_IA32_FEATURE_CONTROL 0x3au
#define MSR_IA32_ARCH_CAPABILITIES 0x10au
#define MSR_IA32_PERF_CAPABILITIES 0x345u
#define MSR_IA32_VMX_BASIC 0x480u
#define MSR_IA32_VMX_VMFUNC 0x491u
#define MSR_IA32_TSC_DEADLINE 0x6e0u

#define EVENTS_KNOWN_FLAGS (KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR | \
			    KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM |           \
			    KVM_VCPUEVENT_VALID_PAYLOAD | KVM_VCPUEVENT_VALID_TRIPLE_FAULT)
#define CLOCK_KNOWN_FLAGS (KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC)

struct section_desc;
typedef int (*section_check_fn)(const struct section_desc *d, const uint8_t *p, uint32_t len,
				struct mig_error *err);

struct section_desc {
	const char *name;
	enum blob_kind kind;
	uint32_t size;          /* exact payload size; 0 = variable, see check */
	bool required;
	section_check_fn check; /* extra checks on the payload, may be NULL */
};

static int check_cpuid2(const struct section_desc *d, const uint8_t *p, uint32_t len,
			struct mig_error *err);
static int check_msrs(const struct section_desc *d, const uint8_t *p, uint32_t len,
		      struct mig_error *err);
static int check_xsave(const struct section_desc *d, const uint8_t *p, uint32_t len,
		       struct mig_error *err);
static int check_events(const struct section_desc *d, const uint8_t *p, uint32_t len,
			struct mig_error *err);
static int check_mp_state(const struct section_desc *d, const uint8_t *p, uint32_t len,
			  struct mig_error *err);
static int check_xcrs(const struct section_desc *d, const uint8_t *p, uint32_t len,
		      struct mig_error *err);
static int check_sregs2(const struct section_desc *d, const uint8_t *p, uint32_t len,
			struct mig_error *err);
static int check_debugregs(const struct section_desc *d, const uint8_t *p, uint32_t len,
			   struct mig_error *err);
static int check_clock(const struct section_desc *d, const uint8_t *p, uint32_t len,
		       struct mig_error *err);

/*
 * SREGS2 and SREGS are each optional here because exactly one of the two is
 * required; blob_parse() checks that pair.  The irqchip trio is all-or-none
 * (a split irqchip keeps PIC and IOAPIC in userspace), also in blob_parse().
 */
static const struct section_desc section_descs[_SEC_MAX] = {
	[SEC_CPUID2] = { "CPUID2", BLOB_KIND_VCPU, 0, true, check_cpuid2 },
	[SEC_VCPU_EVENTS] = { "VCPU_EVENTS", BLOB_KIND_VCPU, sizeof(struct kvm_vcpu_events), true,
			      check_events },
	[SEC_MP_STATE] = { "MP_STATE", BLOB_KIND_VCPU, sizeof(struct kvm_mp_state), true,
			   check_mp_state },
	[SEC_REGS] = { "REGS", BLOB_KIND_VCPU, sizeof(struct kvm_regs), true, NULL },
	[SEC_XSAVE] = { "XSAVE", BLOB_KIND_VCPU, 0, true, check_xsave },
	[SEC_XCRS] = { "XCRS", BLOB_KIND_VCPU, sizeof(struct kvm_xcrs), true, check_xcrs },
	[SEC_SREGS2] = { "SREGS2", BLOB_KIND_VCPU, sizeof(struct kvm_sregs2), false, check_sregs2 },
	[SEC_SREGS] = { "SREGS", BLOB_KIND_VCPU, sizeof(struct kvm_sregs), false, NULL },
	[SEC_MSRS] = { "MSRS", BLOB_KIND_VCPU, 0, true, check_msrs },
	[SEC_LAPIC] = { "LAPIC", BLOB_KIND_VCPU, sizeof(struct kvm_lapic_state), true, NULL },
	[SEC_DEBUGREGS] = { "DEBUGREGS", BLOB_KIND_VCPU, sizeof(struct kvm_debugregs), true,
			    check_debugregs },
	[SEC_TSC_OFFSET] = { "TSC_OFFSET", BLOB_KIND_VCPU, sizeof(uint64_t), false, NULL },
	[SEC_CLOCK] = { "CLOCK", BLOB_KIND_VM, sizeof(struct kvm_clock_data), true, check_clock },
	[SEC_PIC_MASTER] = { "PIC_MASTER", BLOB_KIND_VM, sizeof(struct kvm_pic_state), false, NULL },
	[SEC_PIC_SLAVE] = { "PIC_SLAVE", BLOB_KIND_VM, sizeof(struct kvm_pic_state), false, NULL },
	[SEC_IOAPIC] = { "IOAPIC", BLOB_KIND_VM, sizeof(struct kvm_ioapic_state), false, NULL },
	[SEC_PIT2] = { "PIT2", BLOB_KIND_VM, sizeof(struct kvm_pit_state2), false, NULL },
};

static const char *kind_prefix(enum blob_kind kind)
{
	return kind == BLOB_KIND_VM ? "vm state" : "vcpu state";
}

static const char *kind_name(uint32_t kind)
{
	switch (kind) {
	case BLOB_KIND_VCPU:
		return "vcpu";
	case BLOB_KIND_VM:
		return "vm";
	default:
		return "unknown";
	}
}

static const struct section_desc *section_lookup(uint32_t type)
{
	if (type >= _SEC_MAX || !section_descs[type].name)
		return NULL;
	return &section_descs[type];
}

static uint32_t get_le32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, sizeof(v));
}

/* Turn a failed ioctl's errno into the library's -errno plus a message. */
static int sys_error(struct mig_error *err, const char *who, const char *what, const char *hint)
{
	int code = -errno;

	return mig_error_set(err, code, "%s: %s failed: %s%s%s", who, what, strerror(-code),
			     hint ? "; " : "", hint ? hint : "");
}

static int kvm_cap(int fd, long cap)
{
	int r = ioctl(fd, KVM_CHECK_EXTENSION, cap);

	return r < 0 ? 0 : r;
}

/* ------------------------------------------------------------------------
 * Per-section payload checks (no kernel access)
 */

static int check_cpuid2(const struct section_desc *d, const uint8_t *p, uint32_t len,
			struct mig_error *err)
{
	uint32_t nent;

	if (len < sizeof(struct kvm_cpuid2))
		return mig_error_set(err, -EINVAL,
				     "vcpu state: section %s has length %u, expected at least %zu",
				     d->name, len, sizeof(struct kvm_cpuid2));
	nent = get_le32(p + offsetof(struct kvm_cpuid2, nent));
	if (nent > CPUID_MAX_ENTRIES)
		return mig_error_set(err, -EINVAL,
				     "vcpu state: section %s has %u entries, more than KVM's limit of %u",
				     d->name, nent, CPUID_MAX_ENTRIES);
	if (len != sizeof(struct kvm_cpuid2) + (size_t)nent * sizeof(struct kvm_cpuid_entry2))
		return mig_error_set(err, -EINVAL,
				     "vcpu state: section %s has length %u, expected %zu for %u entries",
				     d->name, len,
				     sizeof(struct kvm_cpuid2) +
					     (size_t)nent * sizeof(struct kvm_cpuid_entry2),
				     nent);
	return 0;
}

static int check_msrs(const struct section_desc *d, const uint8_t *p, uint32_t len,
		      struct mig_error *err)
{
	const uint8_t *e = p + sizeof(struct kvm_msrs);
	uint32_t n;

	if (len < sizeof(struct kvm_msrs))
		return mig_error_set(err, -EINVAL,
				     "vcpu state: section %s has length %u, expected at least %zu",
				     d->name, len, sizeof(struct kvm_msrs));
	n = get_le32(p + offsetof(struct kvm_msrs, nmsrs));
	if (n > MSR_MAX_ENTRIES)
		return mig_error_set(err, -EINVAL,
				     "vcpu state: section %s has %u MSRs, more than the format's limit of %u",
				     d->name, n, MSR_MAX_ENTRIES);
	if (len != sizeof(struct kvm_msrs) + (size_t)n * sizeof(struct kvm_msr_entry))
		return mig_error_set(err, -EINVAL,
				     "vcpu state: section %s has length %u, expected %zu for %u MSRs",
				     d->name, len,
				     sizeof(struct kvm_msrs) + (size_t)n * sizeof(struct kvm_msr_entry),
				     n);
	if (get_le32(p + offsetof(struct kvm_msrs, pad)))
		return mig_error_set(err, -EINVAL, "vcpu state: section %s: pad field is not zero",
				     d->name);
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *ei = e + (size_t)i * sizeof(struct kvm_msr_entry);
		uint32_t index = get_le32(ei + offsetof(struct kvm_msr_entry, index));

		if (get_le32(ei + offsetof(struct kvm_msr_entry, reserved)))
			return mig_error_set(err, -EINVAL,
					     "vcpu state: section %s: entry %u (MSR 0x%x) has a non-zero reserved field",
					     d->name, i, index);
		/* A duplicate would make the restored value depend on write order. */
		for (uint32_t j = 0; j < i; j++)
			if (get_le32(e + (size_t)j * sizeof(struct kvm_msr_entry)) == index)
				return mig_error_set(err, -EINVAL,
						     "vcpu state: section %s lists MSR 0x%x twice (entries %u and %u)",
						     d->name, index, j, i);
	}
	return 0;
}

static int check_xsave(const struct section_desc *d, const uint8_t *p, uint32_t len,
		       struct mig_error *err)
{
	(void)p;
	if (len < XSAVE_MIN_BYTES || len > XSAVE_MAX_BYTES || len % sizeof(uint32_t))
		return mig_error_set(err, -EINVAL,
				     "vcpu state: section %s has length %u, expected a multiple of 4 between %u and %u",
				     d->name, len, XSAVE_MIN_BYTES, XSAVE_MAX_BYTES);
	return 0;
}

static int check_events(const struct section_desc *d, const uint8_t *p, uint32_t len,
			struct mig_error *err)
{
	uint32_t flags = get_le32(p + offsetof(struct kvm_vcpu_events, flags));

	(void)len;
	/* KVM_SET_VCPU_EVENTS refuses flags it does not know. */
	if (flags & ~(uint32_t)EVENTS_KNOWN_FLAGS)
		return mig_error_set(err, -EINVAL,
				     "vcpu state: section %s has unknown flags 0x%x (known: 0x%x)",
				     d->name, flags, (unsigned)EVENTS_KNOWN_FLAGS);
	return 0;
}

static int check_mp_state(const struct section_desc *d, const uint8_t *p, uint32_t len,
			  struct mig_error *err)
{
	uint32_t mp = get_le32(p);

	(void)len;
	switch (mp) {
	case KVM_MP_STATE_RUNNABLE:
	case KVM_MP_STATE_UNINITIALIZED:
	case KVM_MP_STATE_INIT_RECEIVED:
	case KVM_MP_STATE_HALTED:
	case KVM_MP_STATE_SIPI_RECEIVED:
	case KVM_MP_STATE_AP_RESET_HOLD:
		return 0;
	default:
		return mig_error_set(err, -EINVAL,
				     "vcpu state: section %s holds %u, not an x86 mp_state (0-4 or 9)",
				     d->name, mp);
	}
}

static int check_xcrs(const struct section_desc *d, const uint8_t *p, uint32_t len,
		      struct mig_error *err)
{
	uint32_t nr = get_le32(p + offsetof(struct kvm_xcrs, nr_xcrs));
	uint32_t flags = get_le32(p + offsetof(struct kvm_xcrs, flags));

	(void)len;
	if (nr > KVM_MAX_XCRS)
		return mig_error_set(err, -EINVAL,
				     "vcpu state: section %s has nr_xcrs %u, expected at most %u",
				     d->name, nr, KVM_MAX_XCRS);
	if (flags)
		return mig_error_set(err, -EINVAL,
				     "vcpu state: section %s has flags 0x%x, expected 0", d->name, flags);
	return 0;
}

static int check_sregs2(const struct section_desc *d, const uint8_t *p, uint32_t len,
			struct mig_error *err)
{
	uint64_t flags = get_le64(p + offsetof(struct kvm_sregs2, flags));

	(void)len;
	if (flags & ~(uint64_t)KVM_SREGS2_FLAGS_PDPTRS_VALID)
		return mig_error_set(err, -EINVAL,
				     "vcpu state: section %s has unknown flags 0x%llx (known: 0x%x)",
				     d->name, (unsigned long long)flags, KVM_SREGS2_FLAGS_PDPTRS_VALID);
	return 0;
}

static int check_debugregs(const struct section_desc *d, const uint8_t *p, uint32_t len,
			   struct mig_error *err)
{
	uint64_t flags = get_le64(p + offsetof(struct kvm_debugregs, flags));

	(void)len;
	if (flags)
		return mig_error_set(err, -EINVAL,
				     "vcpu state: section %s has flags 0x%llx, expected 0", d->name,
				     (unsigned long long)flags);
	return 0;
}

static int check_clock(const struct section_desc *d, const uint8_t *p, uint32_t len,
		       struct mig_error *err)
{
	uint32_t flags = get_le32(p + offsetof(struct kvm_clock_data, flags));

	(void)len;
	if (flags & ~(uint32_t)CLOCK_KNOWN_FLAGS)
		return mig_error_set(err, -EINVAL,
				     "vm state: section %s has unknown flags 0x%x (known: 0x%x)", d->name,
				     flags, (unsigned)CLOCK_KNOWN_FLAGS);
	return 0;
}

/* ------------------------------------------------------------------------
 * Parsing
 */

struct blob_view {
	const uint8_t *payload[_SEC_MAX]; /* NULL when the section is absent */
	uint32_t len[_SEC_MAX];
};

static int parse_header(const uint8_t *blob, size_t len, enum blob_kind kind,
			struct mig_error *err)
{
	const char *who = kind_prefix(kind);
	uint32_t version, got_kind, reserved;
	uint64_t total;

	if (!blob || len < sizeof(struct state_header))
		return mig_error_set(err, -EINVAL,
				     "%s: blob is %zu bytes, shorter than the %zu-byte header (truncated?)",
				     who, blob ? len : 0, sizeof(struct state_header));
	if (memcmp(blob, STATE_MAGIC, 8))
		return mig_error_set(err, -EINVAL,
				     "%s: bad magic, expected \"%s\": not a migratectl x86 state blob",
				     who, STATE_MAGIC);
	version = get_le32(blob + offsetof(struct state_header, version));
	if (version == 0)
		return mig_error_set(err, -EINVAL, "%s: format version 0 is invalid", who);
	if (version > STATE_VERSION)
		return mig_error_set(err, -EPROTO,
				     "%s: format version %u, this build reads version %u; upgrade the destination",
				     who, version, STATE_VERSION);
	got_kind = get_le32(blob + offsetof(struct state_header, kind));
	if (got_kind != kind)
		return mig_error_set(err, -EINVAL, "%s: blob kind is %s (%u), expected %s (%u)", who,
				     kind_name(got_kind), got_kind, kind_name(kind), kind);
	reserved = get_le32(blob + offsetof(struct state_header, reserved));
	if (reserved)
		return mig_error_set(err, -EINVAL,
				     "%s: header reserved field is 0x%x, expected 0", who, reserved);
	total = get_le64(blob + offsetof(struct state_header, total_len));
	if (total != len)
		return mig_error_set(err, -EINVAL,
				     "%s: header total length is %llu bytes but the blob has %zu (truncated or corrupt)",
				     who, (unsigned long long)total, len);
	return 0;
}

/*
 * Checks everything that can be checked without a kernel and records where
 * each known section's payload is.  Section order is not significant.
 */
static int blob_parse(const uint8_t *blob, size_t len, enum blob_kind kind,
		      struct blob_view *ret, struct mig_error *err)
{
	const char *who = kind_prefix(kind);
	uint32_t nr_sections;
	size_t off = sizeof(struct state_header);
	int r;

	memset(ret, 0, sizeof(*ret));
	r = parse_header(blob, len, kind, err);
	if (r < 0)
		return r;
	nr_sections = get_le32(blob + offsetof(struct state_header, nr_sections));

	for (uint32_t i = 0; i < nr_sections; i++) {
		const struct section_desc *d;
		uint32_t type, slen;
		size_t padded;

		if (len - off < sizeof(struct section_header))
			return mig_error_set(err, -EINVAL,
					     "%s: section %u of %u: header at offset %zu runs past the end of the %zu-byte blob",
					     who, i, nr_sections, off, len);
		type = get_le32(blob + off);
		slen = get_le32(blob + off + 4);
		d = section_lookup(type);
		padded = ALIGN_UP((size_t)slen, SECTION_ALIGN);
		if (padded > len - off - sizeof(struct section_header))
			return mig_error_set(err, -EINVAL,
					     "%s: section %u (%s, type %u) at offset %zu: length %u runs past the end of the %zu-byte blob",
					     who, i, d ? d->name : "unknown", type, off, slen, len);
		off += sizeof(struct section_header);
		for (size_t k = slen; k < padded; k++)
			if (blob[off + k])
				return mig_error_set(err, -EINVAL,
						     "%s: section %u (%s): padding byte %zu is not zero",
						     who, i, d ? d->name : "unknown", k - slen);

		if (!d) {
			if (type & SECTION_SKIPPABLE) {
				off += padded;
				continue;
			}
			return mig_error_set(err, -EINVAL,
					     "%s: section %u has unknown type %u (0x%x) not marked skippable; this build cannot restore it",
					     who, i, type, type);
		}
		if (d->kind != kind)
			return mig_error_set(err, -EINVAL,
					     "%s: section %s belongs in a %s blob, not a %s blob", who,
					     d->name, kind_name(d->kind), kind_name(kind));
		if (ret->payload[type])
			return mig_error_set(err, -EINVAL, "%s: duplicate section %s", who, d->name);
		if (d->size && slen != d->size)
			return mig_error_set(err, -EINVAL, "%s: section %s has length %u, expected %u",
					     who, d->name, slen, d->size);
		if (d->check) {
			r = d->check(d, blob + off, slen, err);
			if (r < 0)
				return r;
		}
		ret->payload[type] = blob + off;
		ret->len[type] = slen;
		off += padded;
	}
	if (off != len)
		return mig_error_set(err, -EINVAL,
				     "%s: %zu trailing bytes after the %u sections the header announces",
				     who, len - off, nr_sections);

	for (unsigned t = 0; t < _SEC_MAX; t++) {
		const struct section_desc *d = section_lookup(t);

		if (d && d->kind == kind && d->required && !ret->payload[t])
			return mig_error_set(err, -EINVAL, "%s: required section %s is missing", who,
					     d->name);
	}
	if (kind == BLOB_KIND_VCPU) {
		if (!ret->payload[SEC_SREGS2] && !ret->payload[SEC_SREGS])
			return mig_error_set(err, -EINVAL,
					     "%s: required section SREGS2 (or SREGS) is missing", who);
		if (ret->payload[SEC_SREGS2] && ret->payload[SEC_SREGS])
			return mig_error_set(err, -EINVAL,
					     "%s: both SREGS2 and SREGS are present, expected exactly one",
					     who);
	} else {
		int n = !!ret->payload[SEC_PIC_MASTER] + !!ret->payload[SEC_PIC_SLAVE] +
			!!ret->payload[SEC_IOAPIC];

		if (n != 0 && n != 3)
			return mig_error_set(err, -EINVAL,
					     "%s: irqchip is incomplete: PIC_MASTER %s, PIC_SLAVE %s, IOAPIC %s (expected all three or none)",
					     who, ret->payload[SEC_PIC_MASTER] ? "present" : "missing",
					     ret->payload[SEC_PIC_SLAVE] ? "present" : "missing",
					     ret->payload[SEC_IOAPIC] ? "present" : "missing");
	}
	return 0;
}

int x86_vcpu_state_validate(const uint8_t *blob, size_t len, struct mig_error *err)
{
	struct blob_view v;

	return blob_parse(blob, len, BLOB_KIND_VCPU, &v, err);
}

int x86_vm_state_validate(const uint8_t *blob, size_t len, struct mig_error *err)
{
	struct blob_view v;

	return blob_parse(blob, len, BLOB_KIND_VM, &v, err);
}

/* ------------------------------------------------------------------------
 * Writing
 */

struct blob_writer {
	struct mig_buf *out;
	size_t start;           /* offset of our header in out: callers may append */
	uint32_t nr_sections;
	const char *who;
};

static int writer_begin(struct blob_writer *w, struct mig_buf *out, enum blob_kind kind,
			struct mig_error *err)
{
	uint8_t hdr[sizeof(struct state_header)] = { 0 };
	int r;

	w->out = out;
	w->start = out->len;
	w->nr_sections = 0;
	w->who = kind_prefix(kind);
	memcpy(hdr, STATE_MAGIC, 8);
	put_le32(hdr + offsetof(struct state_header, version), STATE_VERSION);
	put_le32(hdr + offsetof(struct state_header, kind), kind);
	/* nr_sections and total_len are patched in writer_end(). */
	r = mig_buf_append(out, hdr, sizeof(hdr));
	if (r < 0)
		return mig_error_set(err, r, "%s: cannot grow the output buffer: %s", w->who,
				     strerror(-r));
	return 0;
}

static int writer_put(struct blob_writer *w, enum section_type type, const void *p, size_t len,
		      struct mig_error *err)
{
	static const uint8_t zeros[SECTION_ALIGN];
	uint8_t sh[sizeof(struct section_header)];
	size_t pad = ALIGN_UP(len, SECTION_ALIGN) - len;
	int r;

	if (len > UINT32_MAX - SECTION_ALIGN)
		return mig_error_set(err, -EOVERFLOW, "%s: section %s is too large (%zu bytes)",
				     w->who, section_descs[type].name, len);
	put_le32(sh, type);
	put_le32(sh + 4, (uint32_t)len);
	r = mig_buf_reserve(w->out, sizeof(sh) + len + pad);
	if (r < 0)
		return mig_error_set(err, r, "%s: cannot grow the output buffer: %s", w->who,
				     strerror(-r));
	mig_buf_append(w->out, sh, sizeof(sh));
	mig_buf_append(w->out, p, len);
	mig_buf_append(w->out, zeros, pad);
	w->nr_sections++;
	return 0;
}

static void writer_end(struct blob_writer *w)
{
	uint8_t *hdr = w->out->data + w->start;

	put_le32(hdr + offsetof(struct state_header, nr_sections), w->nr_sections);
	put_le64(hdr + offsetof(struct state_header, total_len), w->out->len - w->start);
}

/* A failed save leaves out as it was. */
static void writer_abort(struct blob_writer *w)
{
	w->out->len = w->start;
}

/* ------------------------------------------------------------------------
 * Kernel helpers shared by save and load
 */

/* KVM_GET_MSR_INDEX_LIST: ask with nmsrs = 0 for -E2BIG and the count, then fetch. */
static int msr_index_list(int kvm_fd, struct kvm_msr_list **ret, const char *who,
			  struct mig_error *err)
{
	struct kvm_msr_list probe = { .nmsrs = 0 };
	uint32_t n;

	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) == 0) {
		n = 0;
	} else if (errno == E2BIG) {
		n = probe.nmsrs;
	} else {
		return sys_error(err, who, "KVM_GET_MSR_INDEX_LIST", NULL);
	}
	/* The list is fixed at module load; the loop only guards against a surprise. */
	for (int attempt = 0; attempt < 4; attempt++) {
		_cleanup_free_ struct kvm_msr_list *list =
			calloc(1, sizeof(*list) + (size_t)n * sizeof(list->indices[0]));

		if (!list)
			return mig_error_set(err, -ENOMEM, "%s: out of memory for %u MSR indices",
					     who, n);
		list->nmsrs = n;
		if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, list) == 0) {
			*ret = TAKE_PTR(list);
			return 0;
		}
		if (errno != E2BIG)
			return sys_error(err, who, "KVM_GET_MSR_INDEX_LIST", NULL);
		n = list->nmsrs;
	}
	return mig_error_set(err, -EAGAIN, "%s: KVM_GET_MSR_INDEX_LIST kept growing", who);
}

/* Bytes KVM_GET_XSAVE2 writes and KVM_SET_XSAVE reads; 0 = only legacy KVM_GET_XSAVE. */
static uint32_t xsave2_size(int vm_fd)
{
	int size = kvm_cap(vm_fd, KVM_CAP_XSAVE2);

	if (size <= 0)
		return 0;
	return size < (int)XSAVE_MIN_BYTES ? XSAVE_MIN_BYTES : (uint32_t)size;
}

static bool tsc_offset_supported(int vcpu_fd)
{
	struct kvm_device_attr attr = {
		.group = KVM_VCPU_TSC_CTRL,
		.attr = KVM_VCPU_TSC_OFFSET,
	};

	return ioctl(vcpu_fd, KVM_HAS_DEVICE_ATTR, &attr) == 0;
}

/* ------------------------------------------------------------------------
 * vCPU save
 */

static int save_cpuid2(struct blob_writer *w, int vcpu_fd, struct mig_error *err)
{
	/* On E2BIG KVM_GET_CPUID2 does not report the count back; grow and retry. */
	for (uint32_t nent = CPUID_MAX_ENTRIES; nent <= 4 * CPUID_MAX_ENTRIES; nent *= 2) {
		_cleanup_free_ struct kvm_cpuid2 *c =
			calloc(1, sizeof(*c) + (size_t)nent * sizeof(c->entries[0]));

		if (!c)
			return mig_error_set(err, -ENOMEM, "%s: out of memory for CPUID", w->who);
		c->nent = nent;
		if (ioctl(vcpu_fd, KVM_GET_CPUID2, c) == 0)
			return writer_put(w, SEC_CPUID2, c,
					  sizeof(*c) + (size_t)c->nent * sizeof(c->entries[0]), err);
		if (errno != E2BIG)
			return sys_error(err, w->who, "KVM_GET_CPUID2", NULL);
	}
	return mig_error_set(err, -E2BIG, "%s: KVM_GET_CPUID2 needs more than %u entries", w->who,
			     4 * CPUID_MAX_ENTRIES);
}

static int save_fixed(struct blob_writer *w, int fd, unsigned long req, const char *req_name,
		      enum section_type type, void *buf, size_t size, const char *hint,
		      struct mig_error *err)
{
	if (ioctl(fd, req, buf) < 0)
		return sys_error(err, w->who, req_name, hint);
	return writer_put(w, type, buf, size, err);
}

static int save_xsave(struct blob_writer *w, int vm_fd, int vcpu_fd, struct mig_error *err)
{
	uint32_t size = xsave2_size(vm_fd);
	unsigned long req = size ? KVM_GET_XSAVE2 : KVM_GET_XSAVE;
	_cleanup_free_ struct kvm_xsave *x = NULL;

	/* Without KVM_CAP_XSAVE2 the kernel only knows the 4096-byte KVM_GET_XSAVE. */
	if (!size)
		size = XSAVE_MIN_BYTES;
	x = calloc(1, size);
	if (!x)
		return mig_error_set(err, -ENOMEM, "%s: out of memory for %u bytes of XSAVE",
				     w->who, size);
	if (ioctl(vcpu_fd, req, x) < 0)
		return sys_error(err, w->who, req == KVM_GET_XSAVE2 ? "KVM_GET_XSAVE2" : "KVM_GET_XSAVE",
				 NULL);
	return writer_put(w, SEC_XSAVE, x, size, err);
}

/*
 * Reads every MSR of the index list.  GET stops at the first MSR it cannot
 * read and returns how many it did; that one is left out (the destination
 * keeps its reset value) and the read goes on after it.
 */
static int read_msrs(int kvm_fd, int vcpu_fd, const char *who, struct kvm_msrs **ret,
		     struct mig_error *err)
{
	_cleanup_free_ struct kvm_msr_list *list = NULL;
	_cleanup_free_ struct kvm_msrs *out = NULL;
	_cleanup_free_ struct kvm_msrs *io = NULL;
	uint32_t done = 0;
	int r;

	r = msr_index_list(kvm_fd, &list, who, err);
	if (r < 0)
		return r;
	if (list->nmsrs > MSR_MAX_ENTRIES)
		return mig_error_set(err, -E2BIG,
				     "%s: kernel lists %u MSRs, more than the format's limit of %u",
				     who, list->nmsrs, MSR_MAX_ENTRIES);
	out = calloc(1, sizeof(*out) + (size_t)list->nmsrs * sizeof(out->entries[0]));
	io = calloc(1, sizeof(*io) + MSR_IO_CHUNK * sizeof(io->entries[0]));
	if (!out || !io)
		return mig_error_set(err, -ENOMEM, "%s: out of memory for MSRs", who);

	while (done < list->nmsrs) {
		uint32_t chunk = list->nmsrs - done;

		if (chunk > MSR_IO_CHUNK)
			chunk = MSR_IO_CHUNK;
		memset(io->entries, 0, chunk * sizeof(io->entries[0]));
		io->nmsrs = chunk;
		for (uint32_t i = 0; i < chunk; i++)
			io->entries[i].index = list->indices[done + i];
		r = ioctl(vcpu_fd, KVM_GET_MSRS, io);
		if (r < 0)
			return sys_error(err, who, "KVM_GET_MSRS", NULL);
		memcpy(&out->entries[out->nmsrs], io->entries, (size_t)r * sizeof(io->entries[0]));
		out->nmsrs += r;
		done += r;
		if ((uint32_t)r < chunk)
			done++;  /* entries[r] failed: record nothing for it */
	}
	*ret = TAKE_PTR(out);
	return 0;
}

static int save_msrs(struct blob_writer *w, int kvm_fd, int vcpu_fd, struct mig_error *err)
{
	_cleanup_free_ struct kvm_msrs *out = NULL;
	int r = read_msrs(kvm_fd, vcpu_fd, w->who, &out, err);

	if (r < 0)
		return r;
	return writer_put(w, SEC_MSRS, out,
			  sizeof(*out) + (size_t)out->nmsrs * sizeof(out->entries[0]), err);
}

static int save_tsc_offset(struct blob_writer *w, int vcpu_fd, struct mig_error *err)
{
	uint64_t offset = 0;
	struct kvm_device_attr attr = {
		.group = KVM_VCPU_TSC_CTRL,
		.attr = KVM_VCPU_TSC_OFFSET,
		.addr = (uint64_t)(uintptr_t)&offset,
	};

	if (!tsc_offset_supported(vcpu_fd))
		return 0;
	if (ioctl(vcpu_fd, KVM_GET_DEVICE_ATTR, &attr) < 0)
		return sys_error(err, w->who, "KVM_GET_DEVICE_ATTR(KVM_VCPU_TSC_OFFSET)", NULL);
	return writer_put(w, SEC_TSC_OFFSET, &offset, sizeof(offset), err);
}

static int vcpu_save_sections(struct blob_writer *w, int kvm_fd, int vm_fd, int vcpu_fd,
			      struct mig_error *err)
{
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp;
	struct kvm_regs regs;
	struct kvm_xcrs xcrs;
	struct kvm_sregs2 sregs2;
	struct kvm_sregs sregs;
	struct kvm_lapic_state lapic;
	struct kvm_debugregs dbg;
	int r;

	/* CPUID has no ordering constraint on the read side; keep it first. */
	r = save_cpuid2(w, vcpu_fd, err);
	if (r < 0)
		return r;
	/*
	 * KERNEL-UAPI §3.3: EVENTS first (all vCPUs are stopped, so it is
	 * stable); MP_STATE before REGS/SREGS because reading it processes a
	 * pending INIT/SIPI, which rewrites CS:RIP.
	 */
	memset(&events, 0, sizeof(events));
	r = save_fixed(w, vcpu_fd, KVM_GET_VCPU_EVENTS, "KVM_GET_VCPU_EVENTS", SEC_VCPU_EVENTS,
		       &events, sizeof(events), NULL, err);
	if (r < 0)
		return r;
	memset(&mp, 0, sizeof(mp));
	r = save_fixed(w, vcpu_fd, KVM_GET_MP_STATE, "KVM_GET_MP_STATE", SEC_MP_STATE, &mp,
		       sizeof(mp), NULL, err);
	if (r < 0)
		return r;
	memset(&regs, 0, sizeof(regs));
	r = save_fixed(w, vcpu_fd, KVM_GET_REGS, "KVM_GET_REGS", SEC_REGS, &regs, sizeof(regs),
		       NULL, err);
	if (r < 0)
		return r;
	r = save_xsave(w, vm_fd, vcpu_fd, err);
	if (r < 0)
		return r;
	memset(&xcrs, 0, sizeof(xcrs));
	r = save_fixed(w, vcpu_fd, KVM_GET_XCRS, "KVM_GET_XCRS", SEC_XCRS, &xcrs, sizeof(xcrs),
		       NULL, err);
	if (r < 0)
		return r;
	/* SREGS2 carries the PAE PDPTRs that SREGS loses. */
	if (kvm_cap(vm_fd, KVM_CAP_SREGS2) > 0) {
		memset(&sregs2, 0, sizeof(sregs2));
		r = save_fixed(w, vcpu_fd, KVM_GET_SREGS2, "KVM_GET_SREGS2", SEC_SREGS2, &sregs2,
			       sizeof(sregs2), NULL, err);
	} else {
		memset(&sregs, 0, sizeof(sregs));
		r = save_fixed(w, vcpu_fd, KVM_GET_SREGS, "KVM_GET_SREGS", SEC_SREGS, &sregs,
			       sizeof(sregs), NULL, err);
	}
	if (r < 0)
		return r;
	r = save_msrs(w, kvm_fd, vcpu_fd, err);
	if (r < 0)
		return r;
	/* Right after the MSRs, so both views of the TSC are read close together. */
	r = save_tsc_offset(w, vcpu_fd, err);
	if (r < 0)
		return r;
	memset(&lapic, 0, sizeof(lapic));
	r = save_fixed(w, vcpu_fd, KVM_GET_LAPIC, "KVM_GET_LAPIC", SEC_LAPIC, &lapic,
		       sizeof(lapic), "the VM needs an in-kernel irqchip (KVM_CREATE_IRQCHIP before the vCPUs)",
		       err);
	if (r < 0)
		return r;
	memset(&dbg, 0, sizeof(dbg));
	return save_fixed(w, vcpu_fd, KVM_GET_DEBUGREGS, "KVM_GET_DEBUGREGS", SEC_DEBUGREGS, &dbg,
			  sizeof(dbg), NULL, err);
}

int x86_vcpu_state_save(int kvm_fd, int vm_fd, int vcpu_fd, struct mig_buf *out,
			struct mig_error *err)
{
	struct blob_writer w;
	int r;

	r = writer_begin(&w, out, BLOB_KIND_VCPU, err);
	if (r < 0)
		return r;
	r = vcpu_save_sections(&w, kvm_fd, vm_fd, vcpu_fd, err);
	if (r < 0) {
		writer_abort(&w);
		return r;
	}
	writer_end(&w);
	return 0;
}

/* ------------------------------------------------------------------------
 * vCPU load
 */

/* Aligned, kernel-ready copies of every section, built before any SET. */
struct vcpu_restore {
	struct kvm_cpuid2 *cpuid;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp;
	struct kvm_regs regs;
	struct kvm_xsave *xsave;        /* sized for this kernel, zero-filled tail */
	struct kvm_xcrs xcrs;
	bool use_sregs2;
	struct kvm_sregs2 sregs2;
	struct kvm_sregs sregs;
	struct kvm_msrs *msrs;          /* in restore order */
	struct kvm_lapic_state lapic;
	struct kvm_debugregs dbg;
	bool set_tsc_offset;
	uint64_t tsc_offset;
};

static void vcpu_restore_free(struct vcpu_restore *rs)
{
	free(rs->cpuid);
	free(rs->xsave);
	free(rs->msrs);
}

/*
 * Restore rank of an MSR; lower is written first.  Feature MSRs go first
 * (QEMU writes FEATURE_CONTROL before anything else, and PERF_CAPABILITIES
 * gates the PEBS MSRs, §3.6).  TSC_DEADLINE goes last: it is armed relative
 * to the guest TSC, so IA32_TSC must already hold its restored value, and
 * the LAPIC timer mode (restored with the LAPIC before the MSRs) must be set.
 */
static int msr_restore_rank(uint32_t index)
{
	if (index == MSR_IA32_FEATURE_CONTROL || index == MSR_IA32_ARCH_CAPABILITIES ||
	    index == MSR_IA32_PERF_CAPABILITIES ||
	    (index >= MSR_IA32_VMX_BASIC && index <= MSR_IA32_VMX_VMFUNC))
		return 0;
	if (index == MSR_IA32_TSC_DEADLINE)
		return 2;
	return 1;
}

static bool msr_listed(const struct kvm_msr_list *list, uint32_t index)
{
	for (uint32_t i = 0; i < list->nmsrs; i++)
		if (list->indices[i] == index)
			return true;
	return false;
}

static int prepare_msrs(int kvm_fd, const struct blob_view *v, struct vcpu_restore *rs,
			struct mig_error *err)
{
	_cleanup_free_ struct kvm_msr_list *list = NULL;
	const uint8_t *p = v->payload[SEC_MSRS];
	uint32_t n = get_le32(p), k = 0;
	int r;

	r = msr_index_list(kvm_fd, &list, "vcpu state", err);
	if (r < 0)
		return r;
	rs->msrs = calloc(1, sizeof(*rs->msrs) + (size_t)n * sizeof(rs->msrs->entries[0]));
	if (!rs->msrs)
		return mig_error_set(err, -ENOMEM, "vcpu state: out of memory for %u MSRs", n);
	/* Stable partition by rank: within a rank, keep the source's (kernel list) order. */
	for (int rank = 0; rank <= 2; rank++) {
		for (uint32_t i = 0; i < n; i++) {
			struct kvm_msr_entry e;

			memcpy(&e, p + sizeof(struct kvm_msrs) + (size_t)i * sizeof(e), sizeof(e));
			if (msr_restore_rank(e.index) != rank)
				continue;
			/*
			 * Only MSRs this kernel lists are accepted: anything
			 * else would fail halfway through the SETs.
			 */
			if (!msr_listed(list, e.index))
				return mig_error_set(err, -EOPNOTSUPP,
						     "vcpu state: section MSRS: MSR 0x%x is not in this kernel's KVM_GET_MSR_INDEX_LIST; cannot restore it",
						     e.index);
			rs->msrs->entries[k++] = e;
		}
	}
	rs->msrs->nmsrs = k;
	return 0;
}

/* Copies the blob into kernel structs and checks it against this kernel. No SET. */
static int vcpu_load_prepare(int kvm_fd, int vm_fd, int vcpu_fd, const struct blob_view *v,
			     struct vcpu_restore *rs, struct mig_error *err)
{
	uint32_t xsave_len = v->len[SEC_XSAVE], xsave_max = xsave2_size(vm_fd);
	struct kvm_lapic_state probe;
	int r;

	rs->cpuid = malloc(v->len[SEC_CPUID2]);
	if (!rs->cpuid)
		return mig_error_set(err, -ENOMEM, "vcpu state: out of memory for CPUID");
	memcpy(rs->cpuid, v->payload[SEC_CPUID2], v->len[SEC_CPUID2]);
	memcpy(&rs->events, v->payload[SEC_VCPU_EVENTS], sizeof(rs->events));
	memcpy(&rs->mp, v->payload[SEC_MP_STATE], sizeof(rs->mp));
	memcpy(&rs->regs, v->payload[SEC_REGS], sizeof(rs->regs));
	memcpy(&rs->xcrs, v->payload[SEC_XCRS], sizeof(rs->xcrs));
	memcpy(&rs->lapic, v->payload[SEC_LAPIC], sizeof(rs->lapic));
	memcpy(&rs->dbg, v->payload[SEC_DEBUGREGS], sizeof(rs->dbg));

	/*
	 * KVM_SET_XSAVE copies the vCPU's full uabi size from userspace, which
	 * may exceed the blob: hand it a buffer of this kernel's XSAVE2 size
	 * whose tail is zero (xstate_bv says those components are in init state).
	 */
	if (!xsave_max)
		xsave_max = XSAVE_MIN_BYTES;
	if (xsave_len > xsave_max)
		return mig_error_set(err, -EOPNOTSUPP,
				     "vcpu state: section XSAVE has length %u, but this kernel's XSAVE area is %u bytes (KVM_CAP_XSAVE2); the source enabled features this host lacks",
				     xsave_len, xsave_max);
	rs->xsave = calloc(1, xsave_max);
	if (!rs->xsave)
		return mig_error_set(err, -ENOMEM, "vcpu state: out of memory for XSAVE");
	memcpy(rs->xsave, v->payload[SEC_XSAVE], xsave_len);

	rs->use_sregs2 = v->payload[SEC_SREGS2] != NULL;
	if (rs->use_sregs2) {
		if (kvm_cap(vm_fd, KVM_CAP_SREGS2) <= 0)
			return mig_error_set(err, -EOPNOTSUPP,
					     "vcpu state: blob has SREGS2 but this kernel lacks KVM_CAP_SREGS2");
		memcpy(&rs->sregs2, v->payload[SEC_SREGS2], sizeof(rs->sregs2));
	} else {
		memcpy(&rs->sregs, v->payload[SEC_SREGS], sizeof(rs->sregs));
	}

	r = prepare_msrs(kvm_fd, v, rs, err);
	if (r < 0)
		return r;

	/* Reading the LAPIC of a vCPU that never ran has no side effect. */
	if (ioctl(vcpu_fd, KVM_GET_LAPIC, &probe) < 0)
		return sys_error(err, "vcpu state", "KVM_GET_LAPIC on the destination",
				 "the destination VM needs an in-kernel irqchip (KVM_CREATE_IRQCHIP before the vCPUs)");

	/* An optional section: skipped silently on a kernel without the attribute. */
	if (v->payload[SEC_TSC_OFFSET] && tsc_offset_supported(vcpu_fd)) {
		rs->set_tsc_offset = true;
		rs->tsc_offset = get_le64(v->payload[SEC_TSC_OFFSET]);
	}
	return 0;
}

static int set_msrs(int vcpu_fd, const struct kvm_msrs *msrs, struct mig_error *err)
{
	_cleanup_free_ struct kvm_msrs *io =
		calloc(1, sizeof(*io) + MSR_IO_CHUNK * sizeof(io->entries[0]));
	uint32_t done = 0;

	if (!io)
		return mig_error_set(err, -ENOMEM, "vcpu state: out of memory for MSRs");
	while (done < msrs->nmsrs) {
		uint32_t chunk = msrs->nmsrs - done;
		int r;

		if (chunk > MSR_IO_CHUNK)
			chunk = MSR_IO_CHUNK;
		io->nmsrs = chunk;
		memcpy(io->entries, &msrs->entries[done], chunk * sizeof(io->entries[0]));
		r = ioctl(vcpu_fd, KVM_SET_MSRS, io);
		if (r < 0)
			return sys_error(err, "vcpu state", "KVM_SET_MSRS", NULL);
		if ((uint32_t)r < chunk) {
			const struct kvm_msr_entry *e = &msrs->entries[done + r];

			return mig_error_set(err, -EINVAL,
					     "vcpu state: KVM_SET_MSRS refused MSR 0x%x (value 0x%llx, entry %u of %u)",
					     e->index, (unsigned long long)e->data, done + r,
					     msrs->nmsrs);
		}
		done += chunk;
	}
	return 0;
}

static int set_ioctl(int fd, unsigned long req, const void *arg, const char *what,
		     struct mig_error *err)
{
	if (ioctl(fd, req, arg) < 0)
		return sys_error(err, "vcpu state", what, NULL);
	return 0;
}

/*
 * The SETs, in an order that meets every constraint of KERNEL-UAPI §3.3:
 *
 *   CPUID2     first: CR4/EFER/XCR0/MSR checks below consult guest CPUID.
 *   SREGS2     before LAPIC (restores apic_base, hence xAPIC/x2APIC mode).
 *   REGS       before VCPU_EVENTS (SET_REGS drops a pending exception).
 *   XSAVE, XCRS
 *   LAPIC      before the MSRs, so TSC_DEADLINE finds its timer mode.
 *   TSC_OFFSET before the MSRs: see below.
 *   MSRS       feature MSRs first, TSC_DEADLINE last.
 *   VCPU_EVENTS, MP_STATE, DEBUGREGS  as QEMU's full-state put does.
 *
 * TSC: the guest TSC is restored by the IA32_TSC write, as QEMU does: the
 * guest sees its TSC resume from the value it had when saved, consistent
 * with the legacy KVM_SET_CLOCK that freezes kvmclock across the blackout
 * (the only clock path this host supports, §3.4).  The offset attribute is
 * written *before* the MSRs so that the MSR wins whenever both exist.  A raw
 * offset is only meaningful against the source host's TSC: written last it
 * would make the destination guest TSC = destination host TSC + source
 * offset, which can jump backwards across hosts.  It remains the fallback
 * for a blob whose MSR list lacks IA32_TSC (the source could not read it).
 */
static int vcpu_load_apply(int vcpu_fd, const struct vcpu_restore *rs, struct mig_error *err)
{
	int r;

	r = set_ioctl(vcpu_fd, KVM_SET_CPUID2, rs->cpuid, "KVM_SET_CPUID2", err);
	if (r < 0)
		return r;
	if (rs->use_sregs2)
		r = set_ioctl(vcpu_fd, KVM_SET_SREGS2, &rs->sregs2, "KVM_SET_SREGS2", err);
	else
		r = set_ioctl(vcpu_fd, KVM_SET_SREGS, &rs->sregs, "KVM_SET_SREGS", err);
	if (r < 0)
		return r;
	r = set_ioctl(vcpu_fd, KVM_SET_REGS, &rs->regs, "KVM_SET_REGS", err);
	if (r < 0)
		return r;
	r = set_ioctl(vcpu_fd, KVM_SET_XSAVE, rs->xsave, "KVM_SET_XSAVE", err);
	if (r < 0)
		return r;
	r = set_ioctl(vcpu_fd, KVM_SET_XCRS, &rs->xcrs, "KVM_SET_XCRS", err);
	if (r < 0)
		return r;
	r = set_ioctl(vcpu_fd, KVM_SET_LAPIC, &rs->lapic, "KVM_SET_LAPIC", err);
	if (r < 0)
		return r;
	if (rs->set_tsc_offset) {
		struct kvm_device_attr attr = {
			.group = KVM_VCPU_TSC_CTRL,
			.attr = KVM_VCPU_TSC_OFFSET,
			.addr = (uint64_t)(uintptr_t)&rs->tsc_offset,
		};

		r = set_ioctl(vcpu_fd, KVM_SET_DEVICE_ATTR, &attr,
			      "KVM_SET_DEVICE_ATTR(KVM_VCPU_TSC_OFFSET)", err);
		if (r < 0)
			return r;
	}
	r = set_msrs(vcpu_fd, rs->msrs, err);
	if (r < 0)
		return r;
	r = set_ioctl(vcpu_fd, KVM_SET_VCPU_EVENTS, &rs->events, "KVM_SET_VCPU_EVENTS", err);
	if (r < 0)
		return r;
	r = set_ioctl(vcpu_fd, KVM_SET_MP_STATE, &rs->mp, "KVM_SET_MP_STATE", err);
	if (r < 0)
		return r;
	return set_ioctl(vcpu_fd, KVM_SET_DEBUGREGS, &rs->dbg, "KVM_SET_DEBUGREGS", err);
}

int x86_vcpu_state_load(int kvm_fd, int vm_fd, int vcpu_fd, const uint8_t *blob, size_t len,
			struct mig_error *err)
{
	_cleanup_(vcpu_restore_free) struct vcpu_restore rs = { 0 };
	struct blob_view v;
	int r;

	r = blob_parse(blob, len, BLOB_KIND_VCPU, &v, err);
	if (r < 0)
		return r;
	r = vcpu_load_prepare(kvm_fd, vm_fd, vcpu_fd, &v, &rs, err);
	if (r < 0)
		return r;
	return vcpu_load_apply(vcpu_fd, &rs, err);
}

/* ------------------------------------------------------------------------
 * VM-wide state
 */

static const struct {
	enum section_type type;
	uint32_t chip_id;
} irqchip_sections[] = {
	{ SEC_PIC_MASTER, KVM_IRQCHIP_PIC_MASTER },
	{ SEC_PIC_SLAVE, KVM_IRQCHIP_PIC_SLAVE },
	{ SEC_IOAPIC, KVM_IRQCHIP_IOAPIC },
};

static int vm_save_sections(struct blob_writer *w, int vm_fd, struct mig_error *err)
{
	struct kvm_clock_data clock;
	struct kvm_pit_state2 pit;
	int r;

	/* kvmclock keeps counting while the vCPUs are stopped: read it first. */
	memset(&clock, 0, sizeof(clock));
	r = save_fixed(w, vm_fd, KVM_GET_CLOCK, "KVM_GET_CLOCK", SEC_CLOCK, &clock, sizeof(clock),
		       NULL, err);
	if (r < 0)
		return r;

	for (size_t i = 0; i < ARRAY_SIZE(irqchip_sections); i++) {
		struct kvm_irqchip chip = { .chip_id = irqchip_sections[i].chip_id };
		size_t size = section_descs[irqchip_sections[i].type].size;

		if (ioctl(vm_fd, KVM_GET_IRQCHIP, &chip) < 0) {
			/*
			 * ENXIO: no in-kernel PIC/IOAPIC (none, or a split
			 * irqchip whose PIC and IOAPIC live in userspace and
			 * migrate with that device).  All three are absent then.
			 */
			if (errno == ENXIO && i == 0)
				break;
			return sys_error(err, w->who, "KVM_GET_IRQCHIP", NULL);
		}
		r = writer_put(w, irqchip_sections[i].type, &chip.chip, size, err);
		if (r < 0)
			return r;
	}

	memset(&pit, 0, sizeof(pit));
	if (ioctl(vm_fd, KVM_GET_PIT2, &pit) < 0) {
		/* ENXIO: the VM has no in-kernel PIT (KVM_CREATE_PIT2 was not called). */
		if (errno == ENXIO)
			return 0;
		return sys_error(err, w->who, "KVM_GET_PIT2", NULL);
	}
	return writer_put(w, SEC_PIT2, &pit, sizeof(pit), err);
}

int x86_vm_state_save(int vm_fd, struct mig_buf *out, struct mig_error *err)
{
	struct blob_writer w;
	int r;

	r = writer_begin(&w, out, BLOB_KIND_VM, err);
	if (r < 0)
		return r;
	r = vm_save_sections(&w, vm_fd, err);
	if (r < 0) {
		writer_abort(&w);
		return r;
	}
	writer_end(&w);
	return 0;
}

int x86_vm_state_load(int vm_fd, const uint8_t *blob, size_t len, struct mig_error *err)
{
	struct blob_view v;
	int r;

	r = blob_parse(blob, len, BLOB_KIND_VM, &v, err);
	if (r < 0)
		return r;
	/* The clock is not set here but at resume (x86_vm_clock_resume). */
	if (v.payload[SEC_PIC_MASTER]) {
		for (size_t i = 0; i < ARRAY_SIZE(irqchip_sections); i++) {
			enum section_type t = irqchip_sections[i].type;
			struct kvm_irqchip chip = { .chip_id = irqchip_sections[i].chip_id };

			memcpy(&chip.chip, v.payload[t], v.len[t]);
			if (ioctl(vm_fd, KVM_SET_IRQCHIP, &chip) < 0) {
				int code = -errno;

				return mig_error_set(err, code,
						     "vm state: KVM_SET_IRQCHIP(%s) failed: %s%s",
						     section_descs[t].name, strerror(-code),
						     code == -ENXIO ? "; the destination VM has no in-kernel irqchip (KVM_CREATE_IRQCHIP)" : "");
			}
		}
	}
	if (v.payload[SEC_PIT2]) {
		struct kvm_pit_state2 pit;

		memcpy(&pit, v.payload[SEC_PIT2], sizeof(pit));
		if (ioctl(vm_fd, KVM_SET_PIT2, &pit) < 0)
			return sys_error(err, "vm state", "KVM_SET_PIT2",
					 errno == ENXIO ? "the destination VM has no in-kernel PIT (KVM_CREATE_PIT2)" : NULL);
	}
	return 0;
}

int x86_vm_clock_resume(int vm_fd, const int *vcpu_fds, int nr_vcpus, const uint8_t *blob,
			size_t len, struct mig_error *err)
{
	struct kvm_clock_data saved, set = { 0 };
	struct blob_view v;
	int r, cap, first = 0;

	r = blob_parse(blob, len, BLOB_KIND_VM, &v, err);
	if (r < 0)
		return r;
	if (nr_vcpus < 0 || (nr_vcpus > 0 && !vcpu_fds))
		return mig_error_set(err, -EINVAL, "vm state: %d vCPU fds given", nr_vcpus);
	memcpy(&saved, v.payload[SEC_CLOCK], sizeof(saved));

	/*
	 * KVM_SET_CLOCK only acts on KVM_CLOCK_REALTIME (advance the clock by
	 * the wall time elapsed since the source read it); older kernels refuse
	 * any flag at all.  Pass REALTIME only if the source filled it and this
	 * kernel's KVM_CAP_ADJUST_CLOCK mask has it.  Here GET_CLOCK returns
	 * flags 0, so this is QEMU's legacy path: kvmclock resumes at the saved
	 * value, frozen across the blackout like the TSC.
	 */
	cap = kvm_cap(vm_fd, KVM_CAP_ADJUST_CLOCK);
	set.clock = saved.clock;
	if ((saved.flags & KVM_CLOCK_REALTIME) && (cap & KVM_CLOCK_REALTIME)) {
		set.flags = KVM_CLOCK_REALTIME;
		set.realtime = saved.realtime;
	}
	if (ioctl(vm_fd, KVM_SET_CLOCK, &set) < 0)
		return sys_error(err, "vm state", "KVM_SET_CLOCK", NULL);

	/* -EINVAL: the guest never enabled kvmclock on that vCPU; nothing to tell it. */
	for (int i = 0; i < nr_vcpus; i++) {
		if (ioctl(vcpu_fds[i], KVM_KVMCLOCK_CTRL, 0) == 0 || errno == EINVAL)
			continue;
		/* Keep going: one missed pause notice should not cost the others theirs. */
		if (!first) {
			first = -errno;
			mig_error_set(err, first, "vm state: KVM_KVMCLOCK_CTRL on vCPU %d failed: %s",
				      i, strerror(-first));
		}
	}
	return first;
}

/* ------------------------------------------------------------------------
 * Initial CPUID
 */

/* XTILECFG and XTILEDATA (AMX): dynamic xfeatures, need arch_prctl() permission. */
#define XFEATURE_AMX_MASK ((1u << 17) | (1u << 18))

/*
 * What the lab VM changes in KVM's supported CPUID:
 *  - AMX is hidden.  Exposing a dynamic xfeature makes KVM_SET_CPUID2 fail
 *    unless the process asked for it with arch_prctl(), and it would grow
 *    the XSAVE area past 4096 bytes, tying the blob to AMX hosts.
 *  - The APIC IDs in leaves 1, 0xB and 0x1F are this vCPU's.  KVM reports
 *    them as 0 and does not fill them in; the LAPIC ID register, which KVM
 *    initialises to the vCPU id, tells us the value when an irqchip exists.
 */
static void cpuid_filter(struct kvm_cpuid2 *c, int vcpu_fd, uint32_t kvm_features_add)
{
	struct kvm_lapic_state lapic;
	bool have_id = ioctl(vcpu_fd, KVM_GET_LAPIC, &lapic) == 0;
	uint32_t apic_id = 0, n = 0, xsave_max = 576; /* legacy area + XSAVE header */
	struct kvm_cpuid_entry2 *leaf_d0 = NULL;

	if (have_id) {
		/* APIC_ID register at 0x20; xAPIC mode at creation: ID in bits 31:24. */
		memcpy(&apic_id, &lapic.regs[0x20], sizeof(apic_id));
		apic_id >>= 24;
	}
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function == 0xd && (e->index == 17 || e->index == 18))
			continue;               /* AMX state components: drop */
		if (e->function == 0x1d || e->function == 0x1e)
			continue;               /* AMX tile and TMUL information: drop */
		if (e->function == 0xd && e->index == 0)
			e->eax &= ~XFEATURE_AMX_MASK;
		if (e->function == 0x7 && e->index == 0)
			e->edx &= ~((1u << 22) | (1u << 24) | (1u << 25)); /* AMX-BF16/TILE/INT8 */
		if (have_id && e->function == 0x1)
			e->ebx = (e->ebx & 0x00ffffffu) | (apic_id << 24);
		if (e->function == 0x40000001)
			e->eax |= kvm_features_add;   /* what the VMM implements itself */
		if (have_id && (e->function == 0xb || e->function == 0x1f))
			e->edx = apic_id;
		/* User state components 2..31: offset (EBX) + size (EAX) bound the area. */
		if (e->function == 0xd && e->index >= 2 && e->index < 32 && !(e->ecx & 1) &&
		    e->eax && e->ebx + e->eax > xsave_max)
			xsave_max = e->ebx + e->eax;
		c->entries[n] = *e;
		if (e->function == 0xd && e->index == 0)
			leaf_d0 = &c->entries[n];
		n++;
	}
	c->nent = n;
	/* ECX of 0xD.0 is the XSAVE size for every XCR0 bit left: shrink it with AMX gone. */
	if (leaf_d0 && leaf_d0->ecx > xsave_max)
		leaf_d0->ecx = xsave_max;
}

static void cpuid_features(const struct kvm_cpuid2 *c, uint32_t *out);

/* features: where the CPUID features set go (compat_cpuid_features
 * order), or NULL. */
/* What this host's KVM supports.  KVM_GET_SUPPORTED_CPUID fails with E2BIG
 * without saying how many entries it needs: grow until it fits (the kernel
 * caps at 256). */
static int supported_cpuid(int kvm_fd, struct kvm_cpuid2 **ret, struct mig_error *err)
{
	for (uint32_t nent = 64; nent <= 4 * CPUID_MAX_ENTRIES; nent *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + (size_t)nent * sizeof(c->entries[0]));

		if (!c)
			return mig_error_set(err, -ENOMEM, "out of memory");
		c->nent = nent;
		if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			*ret = c;
			return 0;
		}
		free(c);
		if (errno != E2BIG)
			return sys_error(err, "vcpu cpuid", "KVM_GET_SUPPORTED_CPUID", NULL);
	}
	return mig_error_set(err, -E2BIG, "vcpu cpuid: KVM_GET_SUPPORTED_CPUID needs more than "
			     "%u entries", 4 * CPUID_MAX_ENTRIES);
}

static int setup_cpuid(int kvm_fd, int vcpu_fd, uint32_t kvm_features_add, uint32_t *features,
		       struct mig_error *err)
{
	_cleanup_free_ struct kvm_cpuid2 *c = NULL;
	int r = supported_cpuid(kvm_fd, &c, err);

	if (r < 0)
		return r;
	cpuid_filter(c, vcpu_fd, kvm_features_add);
	if (ioctl(vcpu_fd, KVM_SET_CPUID2, c) < 0)
		return sys_error(err, "vcpu cpuid", "KVM_SET_CPUID2",
				 errno == EINVAL ? "the vCPU may have run already (CPUID is frozen after the first KVM_RUN)" : NULL);
	if (features)
		cpuid_features(c, features);
	return 0;
}

int x86_vcpu_setup_cpuid(int kvm_fd, int vcpu_fd, struct mig_error *err)
{
	return setup_cpuid(kvm_fd, vcpu_fd, 0, NULL, err);
}

/* ---- the vCPU class's architecture part (vcpu-arch.h) ---- */

static int describe_msrs(struct kvm_vm_fds *vm, int vcpu_fd, struct mig_error *err);

/* The features it gives the vCPU are what a destination must offer
 * (vcpu_arch_describe()): the table set, not one read back (under PVM a
 * vCPU's KVM_GET_CPUID2 shows host features KVM does not list). */
int vcpu_arch_init(struct kvm_vm_fds *vm, int vcpu_fd, struct mig_error *err)
{
	int r = setup_cpuid(vm->kvm_fd, vcpu_fd, vm->kvm_features_add, vm->guest_cpuid, err);

	if (r < 0)
		return r;
	vm->has_guest_cpuid = true;
	return vm->has_guest_msrs ? 0 : describe_msrs(vm, vcpu_fd, err);
}

int vcpu_arch_save(struct kvm_vm_fds *vm, int vcpu_fd, struct mig_buf *out,
		   struct mig_error *err)
{
	return x86_vcpu_state_save(vm->kvm_fd, vm->vm_fd, vcpu_fd, out, err);
}

int vcpu_arch_load(struct kvm_vm_fds *vm, int vcpu_fd, const uint8_t *blob, size_t len,
		   struct mig_error *err)
{
	return x86_vcpu_state_load(vm->kvm_fd, vm->vm_fd, vcpu_fd, blob, len, err);
}

/* Tell a guest that uses kvmclock it was stopped; harmless if not. */
void vcpu_arch_resumed(int vcpu_fd)
{
	ioctl(vcpu_fd, KVM_KVMCLOCK_CTRL, 0);
}

/* ---- what a destination must offer (policies: compat_cpuid()) ---- */


/* The feature registers of a CPUID table, in compat_cpuid_features order
 * (0 for a leaf it lacks). */
static void cpuid_features(const struct kvm_cpuid2 *c, uint32_t *out)
{
	for (unsigned i = 0; i < COMPAT_CPUID_REGS; i++) {
		const struct compat_cpuid_reg *f = &compat_cpuid_features[i];

		out[i] = 0;
		for (uint32_t k = 0; k < c->nent; k++) {
			const struct kvm_cpuid_entry2 *e = &c->entries[k];
			const uint32_t regs[4] = { e->eax, e->ebx, e->ecx, e->edx };

			if (e->function == f->leaf &&
			    (!(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e->index == f->subleaf)) {
				out[i] = regs[f->reg];
				break;
			}
		}
	}
}


static int u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* What the first vCPU's saved state will hold, read before it runs: the
 * MSRs KVM_GET_MSRS reads (the same read as a save) and PERF_CAPABILITIES
 * among them.  Every vCPU of the VM has the same. */
static int describe_msrs(struct kvm_vm_fds *vm, int vcpu_fd, struct mig_error *err)
{
	_cleanup_free_ struct kvm_msrs *m = NULL;
	_cleanup_free_ uint32_t *idx = NULL;
	int r = read_msrs(vm->kvm_fd, vcpu_fd, "vcpu msrs", &m, err);

	if (r < 0)
		return r;
	idx = calloc(m->nmsrs ? m->nmsrs : 1, sizeof(*idx));
	if (!idx)
		return mig_error_set(err, -ENOMEM, "out of memory");
	for (uint32_t i = 0; i < m->nmsrs; i++) {
		idx[i] = m->entries[i].index;
		if (idx[i] == COMPAT_MSR_PERF_CAPABILITIES) {
			vm->guest_perf_caps = m->entries[i].data;
			vm->has_guest_perf_caps = true;
		}
	}
	qsort(idx, m->nmsrs, sizeof(*idx), u32_cmp);
	r = compat_msrs_encode(idx, m->nmsrs, vm->guest_msrs, sizeof(vm->guest_msrs));
	vm->guest_msrs_fit = r >= 0;
	vm->guest_msrs_len = r >= 0 ? (uint16_t)r : 0;
	vm->has_guest_msrs = true;
	return 0;
}

/* The description: its header, then the MSR list (vm->guest_msrs). */
#define VCPU_DESC_MAGIC 0x32445055504349ULL   /* "ICPUPD2" */
#define VCPU_DESC_PERF_CAPS 1U    /* perf_caps is the guest's */
#define VCPU_DESC_MSRS 2U         /* the MSR list follows (else: too long to describe) */
struct vcpu_desc {
	uint64_t magic;
	uint32_t cpuid[COMPAT_CPUID_REGS];
	uint32_t flags;           /* VCPU_DESC_* */
	uint32_t msrs_len;        /* bytes of MSR list after it */
	uint32_t pad;
	uint64_t perf_caps;
};
_Static_assert(sizeof(struct vcpu_desc) + KVM_VM_MSR_DESC_MAX <= MIG_MANIFEST_DESC_MAX,
	       "a vCPU description fits a manifest entry");

int vcpu_arch_describe(struct kvm_vm_fds *vm, int vcpu_fd, struct mig_buf *out,
		       struct mig_error *err)
{
	const struct compat_profile *prof = compat_profile_get();
	struct vcpu_desc d = { .magic = VCPU_DESC_MAGIC };

	(void)vcpu_fd;
	if (!vm->has_guest_cpuid || !vm->has_guest_msrs)
		return mig_error_set(err, -EINVAL, "vcpu: its CPUID and MSRs were never set up");
	memcpy(d.cpuid, vm->guest_cpuid, sizeof(d.cpuid));
	if (vm->has_guest_perf_caps) {
		d.flags |= VCPU_DESC_PERF_CAPS;
		d.perf_caps = vm->guest_perf_caps;
	}
	/* the agent's host profile: a lab's stand-in for a guest given another PMU */
	if (prof && prof->has_guest_perf_caps) {
		d.flags |= VCPU_DESC_PERF_CAPS;
		d.perf_caps = prof->guest_perf_caps;
	}
	if (vm->guest_msrs_fit)
		d.flags |= VCPU_DESC_MSRS;
	d.msrs_len = vm->guest_msrs_len;
	if (mig_buf_append(out, &d, sizeof(d)) < 0 ||
	    mig_buf_append(out, vm->guest_msrs, vm->guest_msrs_len) < 0)
		return mig_error_set(err, -ENOMEM, "out of memory");
	return 0;
}

const char *const vcpu_arch_policies[] = { "cpuid", "pmu", "msrs", NULL };

/* This host's supported PERF_CAPABILITIES: the feature MSR, 0 where KVM
 * does not list it (no PMU for guests). */
static int host_perf_caps(int kvm_fd, uint64_t *ret, struct mig_error *err)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} q = { .h.nmsrs = 1, .e.index = COMPAT_MSR_PERF_CAPABILITIES };
	int r;

	*ret = 0;
	r = ioctl(kvm_fd, KVM_GET_MSRS, &q);
	if (r < 0)
		return sys_error(err, "vcpu pmu", "KVM_GET_MSRS (feature MSRs)", NULL);
	if (r == 1)
		*ret = q.e.data;
	return 0;
}

/* What this host's KVM accepts in KVM_SET_MSRS: its index list and its
 * feature MSR list. */
static int host_msrs(int kvm_fd, uint32_t **ret, unsigned *ret_n, struct mig_error *err)
{
	_cleanup_free_ struct kvm_msr_list *list = NULL;
	struct kvm_msr_list probe = { .nmsrs = 0 };
	_cleanup_free_ struct kvm_msr_list *feat = NULL;
	uint32_t *all;
	uint32_t nf = 0;
	int r = msr_index_list(kvm_fd, &list, "vcpu msrs", err);

	if (r < 0)
		return r;
	if (ioctl(kvm_fd, KVM_GET_MSR_FEATURE_INDEX_LIST, &probe) < 0 && errno == E2BIG)
		nf = probe.nmsrs;
	if (nf) {
		feat = calloc(1, sizeof(*feat) + (size_t)nf * sizeof(feat->indices[0]));
		if (!feat)
			return mig_error_set(err, -ENOMEM, "out of memory");
		feat->nmsrs = nf;
		if (ioctl(kvm_fd, KVM_GET_MSR_FEATURE_INDEX_LIST, feat) < 0)
			return sys_error(err, "vcpu msrs", "KVM_GET_MSR_FEATURE_INDEX_LIST", NULL);
		nf = feat->nmsrs;
	}
	all = calloc((size_t)list->nmsrs + nf + 1, sizeof(*all));
	if (!all)
		return mig_error_set(err, -ENOMEM, "out of memory");
	memcpy(all, list->indices, list->nmsrs * sizeof(*all));
	if (nf)
		memcpy(all + list->nmsrs, feat->indices, nf * sizeof(*all));
	*ret = all;
	*ret_n = compat_profile_msrs(compat_profile_get(), all, list->nmsrs + nf);
	return 0;
}

int vcpu_arch_check_one(struct kvm_vm_fds *vm, const void *p, size_t n, unsigned policy,
			struct mig_error *err)
{
	const struct compat_profile *prof = compat_profile_get();
	struct vcpu_desc d;
	int r;

	if (n < sizeof(d))
		return mig_error_set(err, -EPROTO, "vcpu: a description of %zu bytes (at least "
				     "%zu expected)", n, sizeof(d));
	memcpy(&d, p, sizeof(d));
	if (d.magic != VCPU_DESC_MAGIC)
		return mig_error_set(err, -EPROTO, "vcpu: the description is not an x86 vCPU's of "
				     "this version: migrate between hosts of one architecture and "
				     "build");
	if (n != sizeof(d) + d.msrs_len || d.pad ||
	    (d.flags & ~(VCPU_DESC_PERF_CAPS | VCPU_DESC_MSRS)))
		return mig_error_set(err, -EPROTO, "vcpu: a description of %zu bytes, its header "
				     "says %zu", n, sizeof(d) + d.msrs_len);
	switch (policy) {
	case 0: {   /* cpuid */
		_cleanup_free_ struct kvm_cpuid2 *c = NULL;
		uint32_t host[COMPAT_CPUID_REGS];

		r = supported_cpuid(vm->kvm_fd, &c, err);
		if (r < 0)
			return r;
		cpuid_features(c, host);
		compat_profile_cpuid(prof, host);
		return compat_cpuid(d.cpuid, host, err);
	}
	case 1: {   /* pmu */
		uint64_t host;

		if (!(d.flags & VCPU_DESC_PERF_CAPS))
			return 0;   /* the guest has none to lose */
		r = host_perf_caps(vm->kvm_fd, &host, err);
		if (r < 0)
			return r;
		return compat_perf_caps(d.perf_caps, compat_profile_perf_caps(prof, host), err);
	}
	case 2: {   /* msrs */
		_cleanup_free_ uint32_t *guest = NULL, *host = NULL;
		unsigned nh = 0;

		if (!(d.flags & VCPU_DESC_MSRS)) {
			mig_error_set(err, 0, "the source's MSR list is longer than a description "
				      "holds: not checked here (the destination still checks it "
				      "before its first KVM_SET_MSRS)");
			return 1;
		}
		guest = calloc(MSR_MAX_ENTRIES, sizeof(*guest));
		if (!guest)
			return mig_error_set(err, -ENOMEM, "out of memory");
		r = compat_msrs_decode((const uint8_t *)p + sizeof(d), n - sizeof(d), guest,
				       MSR_MAX_ENTRIES);
		if (r < 0)
			return mig_error_set(err, -EPROTO, "vcpu: its MSR list is malformed");
		n = (size_t)r;
		r = host_msrs(vm->kvm_fd, &host, &nh, err);
		if (r < 0)
			return r;
		return compat_msrs(guest, (unsigned)n, host, nh, err);
	}
	default:
		return mig_error_set(err, -EINVAL, "vcpu: no policy %u", policy);
	}
}
