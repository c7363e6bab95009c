// SPDX-License-Identifier: MIT
/*
 * The SEV class and its psp-sim firmware, without a VM: the firmware's
 * guest states and refusals (with their SEV API status codes), its
 * transport encryption (a page opens only with its migration's key, at
 * its address, undamaged), the guest's hypercall and MSR as the class
 * takes them, and the destination's check that every page came in the
 * form the guest has it in.
 */
#include <criterion/criterion.h>
#include <endian.h>
#include <errno.h>
#include <string.h>

#include <linux/psp-sev.h>

#include "sev/sev.h"

#define PAGES 64
#define RAM (PAGES * 4096)

static struct sev_fw *sim(void)
{
	struct sev_fw *fw = NULL;
	struct mig_error err = { 0 };

	cr_assert_eq(sev_fw_sim_create(&fw, &err), 0, "%s", err.msg);
	return fw;
}

static void pdh_of(struct sev_fw *fw, struct mig_buf *b)
{
	struct mig_error err = { 0 };

	b->len = 0;
	cr_assert_eq(fw->ops->pdh(fw, b, &err), 0, "%s", err.msg);
}

/* A source in SENDING towards dst, and dst in RECEIVING with its session. */
static void pair(struct sev_fw *src, struct sev_fw *dst, uint32_t policy)
{
	struct mig_buf pdh = { 0 }, ses = { 0 }, spdh = { 0 };
	struct mig_error err = { 0 };
	uint32_t st = 99;

	cr_assert_eq(src->ops->launch(src, policy, &st, &err), 0, "%s", err.msg);
	pdh_of(dst, &pdh);
	pdh_of(src, &spdh);
	cr_assert_eq(src->ops->send_start(src, pdh.data, pdh.len, &ses, &st, &err), 0, "%s",
		     err.msg);
	cr_assert_eq(st, 0);
	cr_assert_eq(dst->ops->receive_start(dst, policy, spdh.data, spdh.len, ses.data, ses.len,
					     &st, &err), 0, "%s", err.msg);
	mig_buf_free(&pdh);
	mig_buf_free(&ses);
	mig_buf_free(&spdh);
}

static unsigned fw_state(struct sev_fw *fw)
{
	struct mig_error err = { 0 };
	unsigned s = 99;

	cr_assert_eq(fw->ops->status(fw, &s, &err), 0);
	return s;
}

Test(psp_sim, guest_states_and_what_each_refuses)
{
	struct sev_fw *a = sim(), *b = sim();
	struct mig_buf pdh = { 0 }, ses = { 0 };
	struct mig_error err = { 0 };
	uint8_t page[4096], out[4096], hdr[SEV_PACKET_HDR];
	uint32_t st = 0;

	cr_assert_eq(fw_state(a), SEV_FW_INVALID);
	/* nothing to send before a launch */
	pdh_of(b, &pdh);
	cr_assert_eq(a->ops->send_start(a, pdh.data, pdh.len, &ses, &st, &err), -EIO);
	cr_assert_eq(st, SEV_RET_INVALID_GUEST_STATE);
	cr_assert(strstr(err.msg, "INVALID_GUEST_STATE"), "%s", err.msg);
	cr_assert_eq(a->ops->launch(a, 0, &st, &err), 0, "%s", err.msg);
	cr_assert_eq(fw_state(a), SEV_FW_RUNNING);
	/* a page command needs SENDING */
	memset(page, 7, sizeof(page));
	cr_assert_eq(a->ops->send_update(a, 0, page, out, hdr, &st, &err), -EIO);
	cr_assert_eq(st, SEV_RET_INVALID_GUEST_STATE);
	/* cancel and finish need SENDING too */
	cr_assert_eq(a->ops->send_cancel(a, &st, &err), -EIO);
	cr_assert_eq(st, SEV_RET_INVALID_GUEST_STATE);
	cr_assert_eq(a->ops->send_finish(a, &st, &err), -EIO);
	/* a PDH that is no key */
	cr_assert_eq(a->ops->send_start(a, "short", 5, &ses, &st, &err), -EIO);
	cr_assert_eq(st, SEV_RET_INVALID_CERTIFICATE);
	cr_assert_eq(a->ops->send_start(a, pdh.data, pdh.len, &ses, &st, &err), 0, "%s", err.msg);
	cr_assert_eq(fw_state(a), SEV_FW_SENDING);
	/* cancel: RUNNING again, and a new SEND_START may follow */
	cr_assert_eq(a->ops->send_cancel(a, &st, &err), 0, "%s", err.msg);
	cr_assert_eq(fw_state(a), SEV_FW_RUNNING);
	ses.len = 0;
	cr_assert_eq(a->ops->send_start(a, pdh.data, pdh.len, &ses, &st, &err), 0, "%s", err.msg);
	cr_assert_eq(a->ops->send_finish(a, &st, &err), 0, "%s", err.msg);
	cr_assert_eq(fw_state(a), SEV_FW_SENT);
	/* SENT is the end: no new session */
	cr_assert_eq(a->ops->send_start(a, pdh.data, pdh.len, &ses, &st, &err), -EIO);
	cr_assert_eq(st, SEV_RET_INVALID_GUEST_STATE);
	/* a receiver needs RECEIVING for its pages and its finish */
	cr_assert_eq(b->ops->receive_update(b, 0, hdr, out, page, &st, &err), -EIO);
	cr_assert_eq(st, SEV_RET_INVALID_GUEST_STATE);
	cr_assert_eq(b->ops->receive_finish(b, &st, &err), -EIO);
	mig_buf_free(&pdh);
	mig_buf_free(&ses);
	a->ops->destroy(a);
	b->ops->destroy(b);
}

Test(psp_sim, nosend_policy_is_refused)
{
	struct sev_fw *a = sim(), *b = sim();
	struct mig_buf pdh = { 0 }, ses = { 0 };
	struct mig_error err = { 0 };
	uint32_t st = 0;

	cr_assert_eq(a->ops->launch(a, SEV_POLICY_NOSEND, &st, &err), 0);
	pdh_of(b, &pdh);
	cr_assert_eq(a->ops->send_start(a, pdh.data, pdh.len, &ses, &st, &err), -EIO);
	cr_assert_eq(st, SEV_RET_POLICY_FAILURE);
	cr_assert_eq(fw_state(a), SEV_FW_RUNNING);
	/* and SEV-ES cannot be launched to migrate at all */
	cr_assert_eq(b->ops->launch(b, SEV_POLICY_ES, &st, &err), -EIO);
	cr_assert_eq(st, SEV_RET_UNSUPPORTED);
	mig_buf_free(&pdh);
	a->ops->destroy(a);
	b->ops->destroy(b);
}

Test(psp_sim, a_page_opens_only_at_its_address_with_its_key_and_intact)
{
	struct sev_fw *src = sim(), *dst = sim(), *other = sim(), *third = sim();
	struct mig_error err = { 0 };
	uint8_t page[4096], trans[4096], hdr[SEV_PACKET_HDR], back[4096];
	uint32_t st = 0;

	pair(src, dst, 0);
	for (unsigned i = 0; i < sizeof(page); i++)
		page[i] = (uint8_t)(i * 7 + 1);
	cr_assert_eq(src->ops->send_update(src, 0x5000, page, trans, hdr, &st, &err), 0, "%s",
		     err.msg);
	/* the transport form is not the page */
	cr_assert_neq(memcmp(trans, page, sizeof(page)), 0, "the page went in clear");
	/* at another address: refused, nothing written */
	memset(back, 0xee, sizeof(back));
	cr_assert_eq(dst->ops->receive_update(dst, 0x6000, hdr, trans, back, &st, &err), -EIO);
	cr_assert_eq(st, SEV_RET_BAD_MEASUREMENT);
	cr_assert_eq(back[0], 0xee, "a refused packet wrote the guest");
	/* damaged: refused */
	trans[100] ^= 1;
	cr_assert_eq(dst->ops->receive_update(dst, 0x5000, hdr, trans, back, &st, &err), -EIO);
	cr_assert_eq(st, SEV_RET_BAD_MEASUREMENT);
	trans[100] ^= 1;
	/* the page itself, sent in clear as if it were a packet: refused */
	err = (struct mig_error){ 0 };
	cr_assert_eq(dst->ops->receive_update(dst, 0x5000, hdr, page, back, &st, &err), -EIO);
	cr_assert_eq(st, SEV_RET_BAD_MEASUREMENT);
	cr_assert(strstr(err.msg, "MAC"), "%s", err.msg);
	/* another migration's receiver (its own key): refused */
	pair(other, third, 0);
	cr_assert_eq(third->ops->receive_update(third, 0x5000, hdr, trans, back, &st, &err), -EIO);
	cr_assert_eq(st, SEV_RET_BAD_MEASUREMENT);
	/* the right one, in place as the class does it */
	memcpy(back, trans, sizeof(back));
	cr_assert_eq(dst->ops->receive_update(dst, 0x5000, hdr, back, back, &st, &err), 0, "%s",
		     err.msg);
	cr_assert_eq(memcmp(back, page, sizeof(page)), 0);
	cr_assert_eq(dst->ops->receive_finish(dst, &st, &err), 0);
	cr_assert_eq(fw_state(dst), SEV_FW_RUNNING);
	src->ops->destroy(src);
	dst->ops->destroy(dst);
	other->ops->destroy(other);
	third->ops->destroy(third);
}

Test(psp_sim, a_session_for_another_destination_does_not_open)
{
	struct sev_fw *src = sim(), *dst = sim(), *wrong = sim();
	struct mig_buf pdh = { 0 }, ses = { 0 }, spdh = { 0 };
	struct mig_error err = { 0 };
	uint32_t st = 0;

	cr_assert_eq(src->ops->launch(src, 0, &st, &err), 0);
	pdh_of(dst, &pdh);
	pdh_of(src, &spdh);
	cr_assert_eq(src->ops->send_start(src, pdh.data, pdh.len, &ses, &st, &err), 0);
	cr_assert_eq(wrong->ops->receive_start(wrong, 0, spdh.data, spdh.len, ses.data, ses.len,
					       &st, &err), -EIO);
	cr_assert_eq(st, SEV_RET_BAD_SIGNATURE);
	cr_assert_eq(fw_state(wrong), SEV_FW_INVALID);
	/* nor under another policy */
	cr_assert_eq(dst->ops->receive_start(dst, SEV_POLICY_NODBG, spdh.data, spdh.len, ses.data,
					     ses.len, &st, &err), -EIO);
	cr_assert_eq(st, SEV_RET_POLICY_FAILURE);
	cr_assert_eq(dst->ops->receive_start(dst, 0, spdh.data, spdh.len, ses.data, ses.len, &st,
					     &err), 0, "%s", err.msg);
	cr_assert_eq(dst->ops->receive_start(dst, 0, spdh.data, spdh.len, ses.data, ses.len, &st,
					     &err), -EIO, "a second RECEIVE_START");
	cr_assert_eq(st, SEV_RET_INVALID_GUEST_STATE);
	mig_buf_free(&pdh);
	mig_buf_free(&ses);
	mig_buf_free(&spdh);
	src->ops->destroy(src);
	dst->ops->destroy(dst);
	wrong->ops->destroy(wrong);
}

/* ---- the class ---- */

static struct sev_dev *dev(uint8_t *ram, bool dest)
{
	struct sev_dev *s = NULL;
	struct mig_error err = { 0 };

	cr_assert_eq(sev_dev_create(sim(), ram, 0, PAGES, 0, dest, &s, &err), 0, "%s", err.msg);
	return s;
}

Test(sev_class, the_hypercall_is_checked_as_kvm_does_and_keeps_the_map)
{
	static uint8_t ram[RAM];
	struct sev_dev *s = dev(ram, false);
	uint64_t bitmap[1] = { 0 }, n = 0;
	struct mig_error err = { 0 };

	cr_assert(sev_page_encrypted(s, 5), "private until said otherwise");
	cr_assert_eq(sev_map_gpa_range(s, 0x1001, 1, 0, false), SEV_KVM_EINVAL, "unaligned");
	cr_assert_eq(sev_map_gpa_range(s, 0x1000, 0, 0, false), SEV_KVM_EINVAL, "no pages");
	cr_assert_eq(sev_map_gpa_range(s, 0x1000, 1, 1ULL << 5, false), SEV_KVM_EINVAL, "bit 5");
	cr_assert_eq(sev_map_gpa_range(s, 0x1000, 1, 3, false), SEV_KVM_EINVAL, "page size 3");
	cr_assert_eq(sev_map_gpa_range(s, 0x1000, UINT64_MAX, 0, false), SEV_KVM_EINVAL, "wraps");
	cr_assert_eq(sev_map_gpa_range(s, (PAGES - 1) * 4096ULL, 2, 0, false), SEV_KVM_EINVAL,
		     "past RAM");
	cr_assert_eq(s->map_calls, 0);
	cr_assert_eq(mig_device_class_get(MIG_DEV_SEV)->dirty_ops->start(&s->core, &err), 0);
	/* pages 4..7 shared, 6 encrypted again: 4 changes, all marked */
	cr_assert_eq(sev_map_gpa_range(s, 4 * 4096, 4, 1, false), 0);
	cr_assert_eq(sev_map_gpa_range(s, 6 * 4096, 1, SEV_MAP_ENCRYPTED, true), 0);
	cr_assert(!sev_page_encrypted(s, 4) && !sev_page_encrypted(s, 7));
	cr_assert(sev_page_encrypted(s, 6) && sev_page_encrypted(s, 8));
	cr_assert_eq(s->map_calls, 1);
	cr_assert_eq(s->map_doorbells, 1);
	cr_assert_eq(s->core.notes, 3, "both routes noted");
	cr_assert_eq(sev_class.dirty_ops->sync(&s->core, bitmap, &n, &err), 0, "%s", err.msg);
	cr_assert_eq(bitmap[0], 0xf0ULL, "the pages whose status changed go again");
	cr_assert_eq(n, 4);
	bitmap[0] = 0;
	cr_assert_eq(sev_class.dirty_ops->sync(&s->core, bitmap, &n, &err), 0);
	cr_assert_eq(bitmap[0], 0, "once");
	sev_dev_destroy(s);
}

Test(sev_class, the_gate_and_its_consent)
{
	static uint8_t ram[RAM];
	struct sev_dev *s = dev(ram, false);
	struct mig_buf desc = { 0 };
	struct mig_error err = { 0 };
	uint64_t bitmap[1] = { 0 }, n;

	cr_assert_eq(sev_msr_read(s), 0, "an encrypted guest starts without READY");
	cr_assert_eq(sev_class.compat_ops->describe(&s->core, &desc, &err), -EAGAIN);
	cr_assert(strstr(err.msg, "KVM_MIGRATION_READY"), "%s", err.msg);
	cr_assert_eq(sev_msr_write(s, 2), -EINVAL, "no such bit: #GP");
	cr_assert_eq(sev_msr_write(s, SEV_MIGRATION_READY), 0);
	cr_assert_eq(sev_class.compat_ops->describe(&s->core, &desc, &err), 0, "%s", err.msg);
	/* cleared while migrating: the next sync fails the migration */
	s->migrating = true;
	cr_assert_eq(sev_msr_write(s, 0), 0);
	err = (struct mig_error){ 0 };
	cr_assert_eq(sev_class.dirty_ops->sync(&s->core, bitmap, &n, &err), -EPERM);
	cr_assert(strstr(err.msg, "cleared KVM_MIGRATION_READY"), "%s", err.msg);
	mig_buf_free(&desc);
	sev_dev_destroy(s);
}

/* The destination's load: a page the guest has encrypted must have come
 * through the firmware, a shared one in clear. */
Test(sev_class, a_page_in_the_wrong_form_fails_the_load)
{
	static uint8_t ram[RAM];
	struct sev_dev *s = dev(ram, true);
	struct {
		uint32_t magic, policy;
		uint64_t msr, nr_pages;
		uint64_t enc[1];
	} st = { htole32(0x31564553U), 0, htole64(1), htole64(PAGES), { ~0ULL } };
	struct mig_mem_reader mr;
	struct mig_error err = { 0 };

	/* every page came in clear (a zero page, say) */
	for (uint64_t p = 0; p < PAGES; p++)
		cr_assert_eq(sev_class.page_ops->decode(&s->core, p, ram + p * 4096, NULL, &err), 0);
	mig_mem_reader_init(&mr, &st, sizeof(st));
	cr_assert_eq(sev_class.ops->load(&s->core, &mr.r, &err), -EBADMSG);
	cr_assert(strstr(err.msg, "page 0 is encrypted in the guest but arrived in clear"), "%s",
		  err.msg);
	/* the guest had them all shared: it loads, with its gate */
	st.enc[0] = 0;
	mig_mem_reader_init(&mr, &st, sizeof(st));
	cr_assert_eq(sev_class.ops->load(&s->core, &mr.r, &err), 0, "%s", err.msg);
	cr_assert_eq(sev_msr_read(s), 1);
	/* a state for another size is refused */
	st.nr_pages = htole64(PAGES + 1);
	mig_mem_reader_init(&mr, &st, sizeof(st));
	cr_assert_eq(sev_class.ops->load(&s->core, &mr.r, &err), -EBADMSG);
	sev_dev_destroy(s);
}
