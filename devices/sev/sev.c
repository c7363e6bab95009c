// SPDX-License-Identifier: MIT
/*
 * The SEV class (sev.h): the guest's migration gate and page-encryption
 * map, and the firmware's send and receive sessions as one state machine
 * (KERNEL-UAPI §5.4, the orders of §5.5).
 */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/kvm.h>
#include <linux/psp-sev.h>

#include "sev/sev.h"
#include "util.h"

#define PAGE 4096ULL

static const char *const state_names[SEV_ST_N] = {
	[SEV_RUNNING] = "running",
	[SEV_SENDING] = "sending",
	[SEV_FINISHED] = "finished",
	[SEV_CREATED] = "created",
	[SEV_RECEIVING] = "receiving",
	[SEV_RECEIVED] = "received",
	[SEV_FAILED] = "failed",
	[SEV_DEAD] = "dead",
};

#define A(from, to) [(from) * SEV_ST_N + (to)] = true
static const bool arcs[SEV_ST_N * SEV_ST_N] = {
	A(SEV_RUNNING, SEV_SENDING),     /* SEND_START */
	A(SEV_SENDING, SEV_RUNNING),     /* SEND_CANCEL: a rollback */
	A(SEV_SENDING, SEV_FINISHED),    /* SEND_FINISH: the destination runs it */
	A(SEV_CREATED, SEV_RECEIVING),   /* RECEIVE_START with the source's session */
	A(SEV_RECEIVING, SEV_RECEIVED),  /* RECEIVE_FINISH */
	A(SEV_RECEIVING, SEV_FAILED),
	A(SEV_RECEIVED, SEV_RUNNING),
	A(SEV_RUNNING, SEV_DEAD),
	A(SEV_FINISHED, SEV_DEAD),
	A(SEV_CREATED, SEV_DEAD),
	A(SEV_RECEIVING, SEV_DEAD),
	A(SEV_RECEIVED, SEV_DEAD),
	A(SEV_FAILED, SEV_DEAD),
};
#undef A

static const char *const fw_states[] = {
	[SEV_FW_INVALID] = "UNINIT", [SEV_FW_LAUNCHING] = "LAUNCHING",
	[SEV_FW_SECRET] = "SECRET", [SEV_FW_RUNNING] = "RUNNING",
	[SEV_FW_RECEIVING] = "RECEIVING", [SEV_FW_SENDING] = "SENDING",
	[SEV_FW_SENT] = "SENT",
};

const char *sev_fw_state_name(unsigned s)
{
	return s < ARRAY_SIZE(fw_states) ? fw_states[s] : "unknown";
}

static const char *const fw_status[] = {
	[SEV_RET_SUCCESS] = "SUCCESS",
	[SEV_RET_INVALID_PLATFORM_STATE] = "INVALID_PLATFORM_STATE",
	[SEV_RET_INVALID_GUEST_STATE] = "INVALID_GUEST_STATE",
	[SEV_RET_INAVLID_CONFIG] = "INVALID_CONFIG",
	[SEV_RET_INVALID_LEN] = "INVALID_LEN",
	[SEV_RET_ALREADY_OWNED] = "ALREADY_OWNED",
	[SEV_RET_INVALID_CERTIFICATE] = "INVALID_CERTIFICATE",
	[SEV_RET_POLICY_FAILURE] = "POLICY_FAILURE",
	[SEV_RET_INACTIVE] = "INACTIVE",
	[SEV_RET_INVALID_ADDRESS] = "INVALID_ADDRESS",
	[SEV_RET_BAD_SIGNATURE] = "BAD_SIGNATURE",
	[SEV_RET_BAD_MEASUREMENT] = "BAD_MEASUREMENT",
	[SEV_RET_ASID_OWNED] = "ASID_OWNED",
	[SEV_RET_INVALID_ASID] = "INVALID_ASID",
	[SEV_RET_WBINVD_REQUIRED] = "WBINVD_REQUIRED",
	[SEV_RET_DFFLUSH_REQUIRED] = "DFFLUSH_REQUIRED",
	[SEV_RET_INVALID_GUEST] = "INVALID_GUEST",
	[SEV_RET_INVALID_COMMAND] = "INVALID_COMMAND",
	[SEV_RET_ACTIVE] = "ACTIVE",
	[SEV_RET_HWSEV_RET_PLATFORM] = "HWERROR_PLATFORM",
	[SEV_RET_HWSEV_RET_UNSAFE] = "HWERROR_UNSAFE",
	[SEV_RET_UNSUPPORTED] = "UNSUPPORTED",
	[SEV_RET_INVALID_PARAM] = "INVALID_PARAM",
	[SEV_RET_RESOURCE_LIMIT] = "RESOURCE_LIMIT",
	[SEV_RET_SECURE_DATA_INVALID] = "SECURE_DATA_INVALID",
};

const char *sev_fw_status_name(uint32_t code)
{
	return code < ARRAY_SIZE(fw_status) && fw_status[code] ? fw_status[code] : "unknown status";
}

static struct sev_dev *sev_of(struct mig_device *d)
{
	return container_of(d, struct sev_dev, core);
}

static bool bit_get(const uint64_t *map, uint64_t pfn)
{
	return __atomic_load_n(&map[pfn / 64], __ATOMIC_RELAXED) & (1ULL << (pfn % 64));
}

static void bit_put(uint64_t *map, uint64_t pfn, bool on)
{
	if (on)
		__atomic_fetch_or(&map[pfn / 64], 1ULL << (pfn % 64), __ATOMIC_RELAXED);
	else
		__atomic_fetch_and(&map[pfn / 64], ~(1ULL << (pfn % 64)), __ATOMIC_RELAXED);
}

bool sev_page_encrypted(const struct sev_dev *s, uint64_t pfn)
{
	return pfn < s->nr_pages && bit_get(s->enc, pfn);
}

/* ---- the guest's side ---- */

uint64_t sev_map_gpa_range(struct sev_dev *s, uint64_t gpa, uint64_t npages, uint64_t attrs,
			   bool doorbell)
{
	uint64_t first, changes = 0;
	bool enc = attrs & SEV_MAP_ENCRYPTED;

	/* KVM's own checks (the guest gets -KVM_EINVAL), then ours: the
	 * range must be this guest's RAM */
	if (gpa % PAGE || !npages || gpa / PAGE + npages <= gpa / PAGE ||
	    (attrs & ~(SEV_MAP_ENCRYPTED | SEV_MAP_PAGE_SZ_MASK)) ||
	    (attrs & SEV_MAP_PAGE_SZ_MASK) > 2 || gpa < s->base_gpa)
		return SEV_KVM_EINVAL;
	first = (gpa - s->base_gpa) / PAGE;
	if (first >= s->nr_pages || npages > s->nr_pages - first)
		return SEV_KVM_EINVAL;
	for (uint64_t p = first; p < first + npages; p++) {
		if (bit_get(s->enc, p) == enc)
			continue;
		/* the new status first: a sender that saw the old one also
		 * sees the page marked for sending again */
		bit_put(s->enc, p, enc);
		bit_put(s->changed, p, true);
		changes++;
	}
	pthread_mutex_lock(&s->lock);
	if (doorbell)
		s->map_doorbells++;
	else
		s->map_calls++;
	s->status_changes += changes;
	s->core.notes |= doorbell ? 2U : 1U;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

int sev_msr_write(struct sev_dev *s, uint64_t value)
{
	if (value & ~SEV_MIGRATION_READY)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	if ((s->msr & SEV_MIGRATION_READY) && !value && s->migrating)
		s->ready_cleared = true;
	s->msr = value;
	s->msr_writes++;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

uint64_t sev_msr_read(struct sev_dev *s)
{
	uint64_t v;

	pthread_mutex_lock(&s->lock);
	v = s->msr;
	pthread_mutex_unlock(&s->lock);
	return v;
}

/* ---- the firmware's steps ---- */

static int fw_failed(struct mig_error *err)
{
	return mig_error_prefix(err, "sev");
}

static int step(struct mig_device *d, int to, struct mig_error *err)
{
	struct sev_dev *s = sev_of(d);
	const struct sev_fw_ops *fw = s->fw->ops;
	uint32_t st = 0;
	int r = 0;

	switch (to) {
	case SEV_SENDING:
		if (!s->peer_pdh.len)
			return mig_error_set(err, -EPROTO, "sev: SEND_START needs the destination's "
					     "PDH, and it sent none");
		s->session.len = 0;
		r = fw->send_start(s->fw, s->peer_pdh.data, s->peer_pdh.len, &s->session, &st, err);
		if (r < 0)
			return fw_failed(err);
		pthread_mutex_lock(&s->lock);
		s->migrating = true;
		s->ready_cleared = false;
		pthread_mutex_unlock(&s->lock);
		return 0;
	case SEV_RUNNING:
		if (d->state == SEV_SENDING)
			r = fw->send_cancel(s->fw, &st, err);
		pthread_mutex_lock(&s->lock);
		s->migrating = false;
		pthread_mutex_unlock(&s->lock);
		return r < 0 ? fw_failed(err) : 0;
	case SEV_FINISHED:
		r = fw->send_finish(s->fw, &st, err);
		return r < 0 ? fw_failed(err) : 0;
	case SEV_RECEIVING:
		/* the source's PDH and session, from opened() */
		r = fw->receive_start(s->fw, s->policy, s->peer_pdh.data, s->peer_pdh.len,
				      s->session.data, s->session.len, &st, err);
		return r < 0 ? fw_failed(err) : 0;
	case SEV_RECEIVED:
		r = fw->receive_finish(s->fw, &st, err);
		return r < 0 ? fw_failed(err) : 0;
	default:
		return 0;
	}
}

/* At RECEIVE, a device still waiting for the source's session stays
 * CREATED: the RECEIVE walk is taken again once it came (opened()). */
static int target_of(const struct mig_device *d, enum mig_stage stage, int target)
{
	const struct sev_dev *s = container_of(d, const struct sev_dev, core);

	if (stage == MIG_STAGE_RECEIVE && !s->have_session)
		return d->state;
	return target;
}

/* ---- state: the gate's value and the map (little-endian, as every
 * class's state on the wire) ---- */

#define STATE_MAGIC 0x31564553U   /* "SEV1" */

struct sev_state_hdr {
	uint32_t magic;
	uint32_t policy;
	uint64_t msr;
	uint64_t nr_pages;
};

static int save(struct mig_device *d, struct mig_writer *w, struct mig_error *err)
{
	struct sev_dev *s = sev_of(d);
	struct sev_state_hdr h = { htole32(STATE_MAGIC), htole32(s->policy),
				   htole64(sev_msr_read(s)), htole64(s->nr_pages) };
	int r = w->write(w, &h, sizeof(h), err);

	for (uint64_t i = 0; r >= 0 && i < DIV_ROUND_UP(s->nr_pages, 64); i++) {
		uint64_t word = htole64(__atomic_load_n(&s->enc[i], __ATOMIC_RELAXED));

		r = w->write(w, &word, 8, err);
	}
	return r;
}

static int load(struct mig_device *d, struct mig_reader *rd, struct mig_error *err)
{
	struct sev_dev *s = sev_of(d);
	size_t words = DIV_ROUND_UP(s->nr_pages, 64);
	struct sev_state_hdr h;
	uint64_t *enc;
	int r;

	if (rd->remaining(rd) != sizeof(h) + words * 8)
		return mig_error_set(err, -EBADMSG, "sev: state of %llu bytes, %zu expected",
				     (unsigned long long)rd->remaining(rd), sizeof(h) + words * 8);
	r = rd->read(rd, &h, sizeof(h), err);
	if (r < 0)
		return r;
	h = (struct sev_state_hdr){ le32toh(h.magic), le32toh(h.policy), le64toh(h.msr),
				    le64toh(h.nr_pages) };
	if (h.magic != STATE_MAGIC || h.nr_pages != s->nr_pages || h.policy != s->policy ||
	    (h.msr & ~SEV_MIGRATION_READY))
		return mig_error_set(err, -EBADMSG, "sev: state for %llu pages, policy %#x, gate "
				     "%#llx; this guest has %llu pages, policy %#x",
				     (unsigned long long)h.nr_pages, h.policy,
				     (unsigned long long)h.msr, (unsigned long long)s->nr_pages,
				     s->policy);
	enc = malloc(words * 8);
	if (!enc)
		return mig_error_set(err, -ENOMEM, "out of memory");
	r = rd->read(rd, enc, words * 8, err);
	for (size_t i = 0; i < words; i++)
		enc[i] = le64toh(enc[i]);
	/* every page must have come last in the form the guest has it in:
	 * an encrypted page through the firmware, a shared one in clear */
	for (uint64_t p = 0; r >= 0 && p < s->nr_pages; p++) {
		bool want = enc[p / 64] & (1ULL << (p % 64)), got = bit_get(s->arrived_enc, p);

		if (want != got)
			r = mig_error_set(err, -EBADMSG, "sev: page %#llx is %s in the guest but "
					  "arrived %s", (unsigned long long)(s->base_gpa / PAGE + p),
					  want ? "encrypted" : "shared",
					  got ? "through the firmware" : "in clear");
	}
	if (r >= 0) {
		memcpy(s->enc, enc, words * 8);
		pthread_mutex_lock(&s->lock);
		s->msr = h.msr;
		pthread_mutex_unlock(&s->lock);
	}
	free(enc);
	return r;
}

/* ---- dirty tracking: pages whose status changed go again ---- */

static int dirty_start(struct mig_device *d, struct mig_error *err)
{
	struct sev_dev *s = sev_of(d);

	(void)err;
	memset(s->changed, 0, DIV_ROUND_UP(s->nr_pages, 64) * 8);
	return 0;
}

static int dirty_sync(struct mig_device *d, uint64_t *bitmap, uint64_t *ret_count,
		      struct mig_error *err)
{
	struct sev_dev *s = sev_of(d);
	uint64_t n = 0;
	bool cleared;

	pthread_mutex_lock(&s->lock);
	cleared = s->ready_cleared;
	pthread_mutex_unlock(&s->lock);
	if (cleared)
		return mig_error_set(err, -EPERM, "sev: the guest cleared KVM_MIGRATION_READY "
				     "during the migration (it no longer consents to it): rolled "
				     "back with SEND_CANCEL; it runs here");
	for (uint64_t w = 0; w < DIV_ROUND_UP(s->nr_pages, 64); w++) {
		uint64_t bits = __atomic_exchange_n(&s->changed[w], 0, __ATOMIC_RELAXED);

		/* the bitmap counts from RAM's first page, as the map does */
		n += (uint64_t)__builtin_popcountll(bits);
		bitmap[w] |= bits;
	}
	*ret_count = n;
	return 0;
}

/* ---- compatibility and the session ---- */

#define DESC_MAGIC 0x44564553U   /* "SEVD" */

struct sev_desc {
	uint32_t magic;
	uint32_t policy;
	uint64_t nr_pages;
	char fw[16];
};

static int describe(struct mig_device *d, struct mig_buf *out, struct mig_error *err)
{
	struct sev_dev *s = sev_of(d);
	struct sev_desc desc = { htole32(DESC_MAGIC), htole32(s->policy), htole64(s->nr_pages),
				 { 0 } };

	if (!(sev_msr_read(s) & SEV_MIGRATION_READY))
		return mig_error_set(err, -EAGAIN, "sev: the guest has not set KVM_MIGRATION_READY "
				     "(bit 0 of MSR %#x), so it does not consent to a migration "
				     "yet; a Linux guest sets it once booted with live migration "
				     "enabled in its firmware. Try again when it has",
				     SEV_MSR_MIGRATION_CONTROL);
	if (s->policy & SEV_POLICY_NOSEND)
		return mig_error_set(err, -EPERM, "sev: the guest's policy %#x has NOSEND: its "
				     "owner forbade migrating it", s->policy);
	snprintf(desc.fw, sizeof(desc.fw), "%s", s->fw->ops->name);
	if (mig_buf_append(out, &desc, sizeof(desc)) < 0)
		return mig_error_set(err, -ENOMEM, "out of memory");
	return 0;
}

static int check(struct mig_device *d, const void *p, size_t n, struct mig_error *err)
{
	struct sev_dev *s = sev_of(d);
	struct sev_desc desc;

	if (n != sizeof(desc))
		return mig_error_set(err, -EBADMSG, "sev: a description of %zu bytes", n);
	memcpy(&desc, p, sizeof(desc));
	desc.magic = le32toh(desc.magic);
	desc.policy = le32toh(desc.policy);
	desc.nr_pages = le64toh(desc.nr_pages);
	desc.fw[sizeof(desc.fw) - 1] = '\0';
	if (desc.magic != DESC_MAGIC)
		return mig_error_set(err, -EBADMSG, "sev: not an SEV description");
	if (strcmp(desc.fw, s->fw->ops->name))
		return mig_error_set(err, -ENOTSUP, "sev: the source's firmware is %s, this host's "
				     "is %s: a guest moves only between hosts with the same kind",
				     desc.fw, s->fw->ops->name);
	if (desc.policy != s->policy || desc.nr_pages != s->nr_pages)
		return mig_error_set(err, -EINVAL, "sev: the source's guest has policy %#x and "
				     "%llu pages, this one policy %#x and %llu pages", desc.policy,
				     (unsigned long long)desc.nr_pages, s->policy,
				     (unsigned long long)s->nr_pages);
	return 0;
}

static int answer(struct mig_device *d, struct mig_buf *out, struct mig_error *err)
{
	struct sev_dev *s = sev_of(d);

	return s->fw->ops->pdh(s->fw, out, err);
}

static int accept(struct mig_device *d, const void *p, size_t n, struct mig_error *err)
{
	struct sev_dev *s = sev_of(d);

	s->peer_pdh.len = 0;
	if (!n)
		return mig_error_set(err, -EPROTO, "sev: the destination sent no PDH");
	if (mig_buf_append(&s->peer_pdh, p, n) < 0)
		return mig_error_set(err, -ENOMEM, "out of memory");
	return 0;
}

static int open_(struct mig_device *d, struct mig_buf *out, struct mig_error *err)
{
	struct sev_dev *s = sev_of(d);
	struct mig_buf pdh = { 0 };
	uint32_t lens[2];
	int r = s->fw->ops->pdh(s->fw, &pdh, err);

	lens[0] = htole32((uint32_t)pdh.len);
	lens[1] = htole32((uint32_t)s->session.len);
	if (r >= 0 && (mig_buf_append(out, lens, sizeof(lens)) < 0 ||
		       mig_buf_append(out, pdh.data, pdh.len) < 0 ||
		       mig_buf_append(out, s->session.data, s->session.len) < 0))
		r = mig_error_set(err, -ENOMEM, "out of memory");
	mig_buf_free(&pdh);
	return r;
}

static int opened(struct mig_device *d, const void *p, size_t n, struct mig_error *err)
{
	struct sev_dev *s = sev_of(d);
	uint32_t lens[2];

	if (n < sizeof(lens))
		return mig_error_set(err, -EBADMSG, "sev: a session of %zu bytes", n);
	memcpy(lens, p, sizeof(lens));
	lens[0] = le32toh(lens[0]);
	lens[1] = le32toh(lens[1]);
	if ((uint64_t)lens[0] + lens[1] + sizeof(lens) != n || !lens[1])
		return mig_error_set(err, -EBADMSG, "sev: a session of %zu bytes says %u + %u",
				     n, lens[0], lens[1]);
	s->peer_pdh.len = 0;
	s->session.len = 0;
	if (mig_buf_append(&s->peer_pdh, (const uint8_t *)p + sizeof(lens), lens[0]) < 0 ||
	    mig_buf_append(&s->session, (const uint8_t *)p + sizeof(lens) + lens[0], lens[1]) < 0)
		return mig_error_set(err, -ENOMEM, "out of memory");
	s->have_session = true;
	return 0;
}

/* ---- pages through the firmware ---- */

static int encode(struct mig_device *d, uint64_t pfn, void *page, void *tag, struct mig_error *err)
{
	struct sev_dev *s = sev_of(d);
	uint32_t st;
	int r;

	if (!sev_page_encrypted(s, pfn))
		return 0;
	r = s->fw->ops->send_update(s->fw, s->base_gpa + pfn * PAGE, s->ram + pfn * PAGE, page,
				    tag, &st, err);
	if (r < 0)
		return fw_failed(err);
	__atomic_fetch_add(&s->pages_sent_enc, 1, __ATOMIC_RELAXED);
	return 1;
}

static int decode(struct mig_device *d, uint64_t pfn, void *page, const void *tag,
		  struct mig_error *err)
{
	struct sev_dev *s = sev_of(d);
	uint32_t st;
	int r;

	if (!tag) {
		bit_put(s->arrived_enc, pfn, false);
		return 0;
	}
	r = s->fw->ops->receive_update(s->fw, s->base_gpa + pfn * PAGE, tag, page, page, &st, err);
	if (r < 0)
		return fw_failed(err);
	bit_put(s->arrived_enc, pfn, true);
	__atomic_fetch_add(&s->pages_recv_enc, 1, __ATOMIC_RELAXED);
	return 0;
}

/*
 * Its place in each stage: SEND_START once RAM's log is on (TRACK 10);
 * SEND_CANCEL before any vCPU runs again (ROLLBACK 5); SEND_FINISH once
 * the destination runs the guest (RELEASE 15).  On the destination,
 * RECEIVE_START once the source's session came; RECEIVE_FINISH after the
 * vCPUs' state and the gate's value are in (LOAD 25, after the vCPUs' 20),
 * running before anything else starts (START 1).
 */
static const struct mig_stage_step steps[] = {
	{ MIG_STAGE_TRACK, 10, SEV_SENDING },
	{ MIG_STAGE_RELEASE, 15, SEV_FINISHED },
	{ MIG_STAGE_ROLLBACK, 5, SEV_RUNNING },
	{ MIG_STAGE_RECEIVE, 10, SEV_RECEIVING },
	{ MIG_STAGE_LOAD, 25, SEV_RECEIVED },
	{ MIG_STAGE_START, 1, SEV_RUNNING },
	{ MIG_STAGE_DISCARD, 5, SEV_DEAD },
};

static const char *const note_names[] = { "map-by-hypercall", "map-by-doorbell" };

static const struct mig_device_ops dev_ops = { .step = step, .save = save, .load = load };
static const struct mig_dirty_ops dirty_ops = { .start = dirty_start, .sync = dirty_sync };
static const struct mig_compat_ops compat_ops = { .describe = describe, .check = check };
static const struct mig_session_ops session_ops = {
	.answer = answer, .accept = accept, .open = open_, .opened = opened,
};
static const struct mig_page_ops page_ops = { .encode = encode, .decode = decode };

const struct mig_device_class sev_class = {
	.id = MIG_DEV_SEV, .name = "sev", .version = 1,
	.no_postcopy = "its pages are encrypted and go in through the firmware, one by one, "
		       "never into a missing page",
	.nr_states = SEV_ST_N, .state_names = state_names, .arcs = arcs,
	.target_of = target_of,
	.steps = steps, .nr_steps = ARRAY_SIZE(steps),
	.load_state = SEV_RECEIVING, .fail_state = SEV_FAILED,
	.ops = &dev_ops, .dirty_ops = &dirty_ops, .compat_ops = &compat_ops,
	.session_ops = &session_ops, .page_ops = &page_ops,
	.note_names = note_names, .nr_notes = ARRAY_SIZE(note_names),
};

int sev_dev_create(struct sev_fw *fw, uint8_t *ram, uint64_t base_gpa, uint64_t nr_pages,
		   uint32_t policy, bool dest, struct sev_dev **ret, struct mig_error *err)
{
	struct sev_dev *s = calloc(1, sizeof(*s));
	size_t words = DIV_ROUND_UP(nr_pages, 64);
	uint32_t st;
	int r;

	if (!s)
		return mig_error_set(err, -ENOMEM, "out of memory");
	s->fw = fw;
	s->ram = ram;
	s->base_gpa = base_gpa;
	s->nr_pages = nr_pages;
	s->policy = policy;
	pthread_mutex_init(&s->lock, NULL);
	s->enc = calloc(words, 8);
	s->changed = calloc(words, 8);
	s->arrived_enc = dest ? calloc(words, 8) : NULL;
	if (!s->enc || !s->changed || (dest && !s->arrived_enc)) {
		r = mig_error_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	/* private until the guest says otherwise, as SEV memory is */
	for (uint64_t p = 0; p < nr_pages; p++)
		s->enc[p / 64] |= 1ULL << (p % 64);
	mig_device_init(&s->core, &sev_class, 0, dest ? SEV_CREATED : SEV_RUNNING);
	r = fw->ops->probe(fw, err);
	if (r >= 0 && !dest)
		r = fw->ops->launch(fw, policy, &st, err);
	if (r < 0)
		goto fail;
	*ret = s;
	return 0;
fail:
	sev_dev_destroy(s);
	return r;
}

void sev_dev_destroy(struct sev_dev *s)
{
	if (!s)
		return;
	if (s->fw)
		s->fw->ops->destroy(s->fw);
	mig_buf_free(&s->peer_pdh);
	mig_buf_free(&s->session);
	free(s->enc);
	free(s->changed);
	free(s->arrived_enc);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* ---- the KVM plumbing ---- */

#if defined(__x86_64__)
int sev_kvm_enable_exits(int kvm_fd, int vm_fd, bool hypercall, struct mig_error *err)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_X86_USER_SPACE_MSR,
				      .args = { KVM_MSR_EXIT_REASON_FILTER } };
	uint8_t deny = 0;   /* a 0 bit denies: the access exits */
	struct kvm_msr_filter f = {
		.flags = KVM_MSR_FILTER_DEFAULT_ALLOW,
		.ranges = { { .flags = KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE, .nmsrs = 1,
			      .base = SEV_MSR_MIGRATION_CONTROL, .bitmap = &deny } },
	};

	/* the exit reason first, then the filter */
	if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_X86_MSR_FILTER) <= 0 ||
	    ioctl(vm_fd, KVM_ENABLE_CAP, &cap) < 0)
		return mig_error_set(err, -ENOTSUP, "sev: this host's KVM cannot send MSR accesses "
				     "to userspace (KVM_CAP_X86_USER_SPACE_MSR, KVM_CAP_X86_MSR_FILTER): "
				     "the migration gate MSR %#x needs them", SEV_MSR_MIGRATION_CONTROL);
	if (ioctl(vm_fd, KVM_X86_SET_MSR_FILTER, &f) < 0)
		return mig_error_set(err, -errno, "sev: KVM_X86_SET_MSR_FILTER: %s", strerror(errno));
	if (!hypercall)
		return 0;
	cap = (struct kvm_enable_cap){ .cap = KVM_CAP_EXIT_HYPERCALL,
				       .args = { 1ULL << SEV_HC_MAP_GPA_RANGE } };
	if (!(ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_EXIT_HYPERCALL) &
	      (1 << SEV_HC_MAP_GPA_RANGE)) || ioctl(vm_fd, KVM_ENABLE_CAP, &cap) < 0)
		return mig_error_set(err, -ENOTSUP, "sev: this host's KVM does not forward "
				     "KVM_HC_MAP_GPA_RANGE (KVM_CAP_EXIT_HYPERCALL)");
	return 0;
}
#else
int sev_kvm_enable_exits(int kvm_fd, int vm_fd, bool hypercall, struct mig_error *err)
{
	(void)kvm_fd;
	(void)vm_fd;
	(void)hypercall;
	return mig_error_set(err, -ENOTSUP, "sev: an SEV guest runs on x86_64 hosts only");
}
#endif

bool sev_kvm_hypercall_exits(int kvm_fd)
{
	if (access("/sys/module/kvm_pvm", F_OK) == 0)
		return false;
	return ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_EXIT_HYPERCALL) &
	       (1 << SEV_HC_MAP_GPA_RANGE);
}

int sev_kvm_exit(struct sev_dev *s, struct kvm_run *run)
{
	switch (run->exit_reason) {
	case KVM_EXIT_HYPERCALL:
		if (run->hypercall.nr != SEV_HC_MAP_GPA_RANGE)
			return -EPROTO;
		/* an error goes back negative, as KVM's own */
		run->hypercall.ret = -sev_map_gpa_range(s, run->hypercall.args[0],
							run->hypercall.args[1],
							run->hypercall.args[2], false);
		return 0;
	case KVM_EXIT_X86_WRMSR:
		if (run->msr.index != SEV_MSR_MIGRATION_CONTROL)
			return -EPROTO;
		run->msr.error = sev_msr_write(s, run->msr.data) < 0;
		return 0;
	case KVM_EXIT_X86_RDMSR:
		if (run->msr.index != SEV_MSR_MIGRATION_CONTROL)
			return -EPROTO;
		run->msr.data = sev_msr_read(s);
		run->msr.error = 0;
		return 0;
	default:
		return -EPROTO;
	}
}
