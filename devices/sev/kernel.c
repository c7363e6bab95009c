// SPDX-License-Identifier: MIT
/*
 * The SEV class's kernel backend: KVM_MEMORY_ENCRYPT_OP on the VM fd, the
 * commands of KERNEL-UAPI §5.3 one for one, the firmware's status in
 * kvm_sev_cmd.error.  No host here has SEV (the probe answers ENOTTY on
 * every kernel we can run), so only the probe and its refusal are tested;
 * the commands follow the uAPI's structs and rules (one page per
 * SEND/RECEIVE_UPDATE_DATA, a length query before SEND_START).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/kvm.h>
#include <linux/psp-sev.h>

#include "sev/sev.h"
#include "util.h"

struct kfw {
	struct sev_fw fw;
	int sev_fd;               /* /dev/sev, for the commands that need it */
};

static int cmd(struct sev_fw *fw, uint32_t id, void *data, uint32_t *st, struct mig_error *err,
	       const char *name)
{
	struct kfw *k = container_of(fw, struct kfw, fw);
	struct kvm_sev_cmd c = { .id = id, .data = (uintptr_t)data, .sev_fd = (uint32_t)k->sev_fd };

	if (ioctl(fw->vm_fd, KVM_MEMORY_ENCRYPT_OP, &c) == 0) {
		*st = 0;
		return 0;
	}
	*st = c.error;
	if (c.error)
		return mig_error_set(err, -EIO, "KVM_SEV_%s: the firmware refused: %s", name,
				     sev_fw_status_name(c.error));
	return mig_error_set(err, -errno, "KVM_SEV_%s: %s", name, strerror(errno));
}

static int k_probe(struct sev_fw *fw, struct mig_error *err)
{
	if (ioctl(fw->vm_fd, KVM_MEMORY_ENCRYPT_OP, NULL) == 0)
		return 0;
	if (errno == ENOTTY)
		return mig_error_set(err, -ENOTSUP, "this host has no SEV: KVM_MEMORY_ENCRYPT_OP "
				     "answers ENOTTY (the CPU has no SEV, or kvm_amd was loaded "
				     "with sev=0). Run SEV guests on an SEV host, or use the "
				     "psp-sim firmware (--lab ...,sev=sim) to try the flow");
	return mig_error_set(err, -errno, "KVM_MEMORY_ENCRYPT_OP probe: %s", strerror(errno));
}

static int k_launch(struct sev_fw *fw, uint32_t policy, uint32_t *st, struct mig_error *err)
{
	struct kvm_sev_launch_start ls = { .policy = policy };
	int r = cmd(fw, KVM_SEV_INIT, NULL, st, err, "INIT");

	if (r >= 0)
		r = cmd(fw, KVM_SEV_LAUNCH_START, &ls, st, err, "LAUNCH_START");
	if (r >= 0)
		r = cmd(fw, KVM_SEV_LAUNCH_FINISH, NULL, st, err, "LAUNCH_FINISH");
	return r;
}

static int k_pdh(struct sev_fw *fw, struct mig_buf *out, struct mig_error *err)
{
	struct kfw *k = container_of(fw, struct kfw, fw);
	struct sev_user_data_pdh_cert_export ex = { 0 };
	struct sev_issue_cmd ic = { .cmd = SEV_PDH_CERT_EXPORT, .data = (uintptr_t)&ex };
	size_t at = out->len;

	/* the first call gives the lengths */
	if (ioctl(k->sev_fd, SEV_ISSUE_CMD, &ic) < 0 && ic.error != SEV_RET_INVALID_LEN)
		return mig_error_set(err, -errno, "SEV_PDH_CERT_EXPORT: %s",
				     ic.error ? sev_fw_status_name(ic.error) : strerror(errno));
	if (mig_buf_reserve(out, at + ex.pdh_cert_len + ex.cert_chain_len) < 0)
		return mig_error_set(err, -ENOMEM, "out of memory");
	ex.pdh_cert_address = (uintptr_t)(out->data + at);
	ex.cert_chain_address = (uintptr_t)(out->data + at + ex.pdh_cert_len);
	if (ioctl(k->sev_fd, SEV_ISSUE_CMD, &ic) < 0)
		return mig_error_set(err, -errno, "SEV_PDH_CERT_EXPORT: %s",
				     ic.error ? sev_fw_status_name(ic.error) : strerror(errno));
	out->len = at + ex.pdh_cert_len + ex.cert_chain_len;
	return 0;
}

static int k_send_start(struct sev_fw *fw, const void *pdh, size_t pdh_len, struct mig_buf *out,
			uint32_t *st, struct mig_error *err)
{
	struct kvm_sev_send_start ss = {
		.pdh_cert_uaddr = (uintptr_t)pdh, .pdh_cert_len = (uint32_t)pdh_len,
	};
	int r;

	/* session_len 0 asks for the length */
	r = cmd(fw, KVM_SEV_SEND_START, &ss, st, err, "SEND_START");
	if (r < 0 && !ss.session_len)
		return r;
	if (mig_buf_reserve(out, out->len + ss.session_len) < 0)
		return mig_error_set(err, -ENOMEM, "out of memory");
	ss.session_uaddr = (uintptr_t)(out->data + out->len);
	r = cmd(fw, KVM_SEV_SEND_START, &ss, st, err, "SEND_START");
	if (r >= 0)
		out->len += ss.session_len;
	return r;
}

static int k_send_update(struct sev_fw *fw, uint64_t gpa, const void *guest, void *trans,
			 uint8_t hdr[SEV_PACKET_HDR], uint32_t *st, struct mig_error *err)
{
	struct kvm_sev_send_update_data u = {
		.hdr_uaddr = (uintptr_t)hdr, .hdr_len = SEV_PACKET_HDR,
		.guest_uaddr = (uintptr_t)guest, .guest_len = 4096,
		.trans_uaddr = (uintptr_t)trans, .trans_len = 4096,
	};

	(void)gpa;
	return cmd(fw, KVM_SEV_SEND_UPDATE_DATA, &u, st, err, "SEND_UPDATE_DATA");
}

static int k_send_finish(struct sev_fw *fw, uint32_t *st, struct mig_error *err)
{
	return cmd(fw, KVM_SEV_SEND_FINISH, NULL, st, err, "SEND_FINISH");
}

static int k_send_cancel(struct sev_fw *fw, uint32_t *st, struct mig_error *err)
{
	return cmd(fw, KVM_SEV_SEND_CANCEL, NULL, st, err, "SEND_CANCEL");
}

static int k_receive_start(struct sev_fw *fw, uint32_t policy, const void *pdh, size_t pdh_len,
			   const void *session, size_t session_len, uint32_t *st,
			   struct mig_error *err)
{
	struct kvm_sev_receive_start rs = {
		.policy = policy,
		.pdh_uaddr = (uintptr_t)pdh, .pdh_len = (uint32_t)pdh_len,
		.session_uaddr = (uintptr_t)session, .session_len = (uint32_t)session_len,
	};

	return cmd(fw, KVM_SEV_RECEIVE_START, &rs, st, err, "RECEIVE_START");
}

static int k_receive_update(struct sev_fw *fw, uint64_t gpa, const uint8_t hdr[SEV_PACKET_HDR],
			    const void *trans, void *guest, uint32_t *st, struct mig_error *err)
{
	struct kvm_sev_receive_update_data u = {
		.hdr_uaddr = (uintptr_t)hdr, .hdr_len = SEV_PACKET_HDR,
		.guest_uaddr = (uintptr_t)guest, .guest_len = 4096,
		.trans_uaddr = (uintptr_t)trans, .trans_len = 4096,
	};

	(void)gpa;
	return cmd(fw, KVM_SEV_RECEIVE_UPDATE_DATA, &u, st, err, "RECEIVE_UPDATE_DATA");
}

static int k_receive_finish(struct sev_fw *fw, uint32_t *st, struct mig_error *err)
{
	return cmd(fw, KVM_SEV_RECEIVE_FINISH, NULL, st, err, "RECEIVE_FINISH");
}

static int k_status(struct sev_fw *fw, unsigned *state, struct mig_error *err)
{
	struct kvm_sev_guest_status gs = { 0 };
	uint32_t st;
	int r = cmd(fw, KVM_SEV_GUEST_STATUS, &gs, &st, err, "GUEST_STATUS");

	*state = gs.state;
	return r;
}

static void k_destroy(struct sev_fw *fw)
{
	struct kfw *k = container_of(fw, struct kfw, fw);

	if (k->sev_fd >= 0)
		close(k->sev_fd);
	free(k);
}

static const struct sev_fw_ops kernel_ops = {
	.name = "kernel",
	.probe = k_probe,
	.launch = k_launch,
	.pdh = k_pdh,
	.send_start = k_send_start,
	.send_update = k_send_update,
	.send_finish = k_send_finish,
	.send_cancel = k_send_cancel,
	.receive_start = k_receive_start,
	.receive_update = k_receive_update,
	.receive_finish = k_receive_finish,
	.status = k_status,
	.destroy = k_destroy,
};

int sev_fw_kernel_create(int vm_fd, struct sev_fw **ret, struct mig_error *err)
{
	struct kfw *k = calloc(1, sizeof(*k));
	int r;

	if (!k)
		return mig_error_set(err, -ENOMEM, "out of memory");
	k->fw = (struct sev_fw){ .ops = &kernel_ops, .vm_fd = vm_fd };
	k->sev_fd = -1;
	r = k_probe(&k->fw, err);
	if (r >= 0) {
		k->sev_fd = open("/dev/sev", O_RDWR | O_CLOEXEC);
		if (k->sev_fd < 0)
			r = mig_error_set(err, -errno, "/dev/sev: %s (the ccp driver's SEV "
					  "firmware device is needed for SEND and RECEIVE)",
					  strerror(errno));
	}
	if (r < 0) {
		k_destroy(&k->fw);
		return r;
	}
	*ret = &k->fw;
	return 0;
}
