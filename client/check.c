// SPDX-License-Identifier: MIT
/*
 * `check`'s two calls (include/migrate/check.h): the source's description
 * of the VM goes, as it is, to the destination, which answers with a
 * verdict per policy.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <migrate/agent.h>
#include <migrate/check.h>
#include <migrate/vm.h>
#include <migrate/wire-order.h>

#include "util.h"

/* The VM to check: the one named, or the only one the source hosts. */
static int pick_vm(struct mig_client *src, const char *name, char *out, struct mig_error *err)
{
	struct mig_buf extra = { 0 };
	size_t n;
	int r;

	if (name) {
		str_copy(out, MIG_NAME_MAX, name);
		return 0;
	}
	r = mig_client_call(src, MIG_OP_VM_LIST, NULL, 0, &extra, err);
	n = extra.len / sizeof(struct mig_vm_info);
	if (r >= 0 && n != 1)
		r = mig_error_set(err, n ? -EINVAL : -ENOENT, "the source hosts %zu VMs: name "
				  "the one to check with --vm", n);
	if (r >= 0)
		str_copy(out, MIG_NAME_MAX, ((const struct mig_vm_info *)extra.data)->name);
	mig_buf_free(&extra);
	return r;
}

int mig_check_run(const struct mig_check_opts *o, struct mig_check_report *ret,
		  struct mig_error *err)
{
	struct mig_client src, dst;
	struct mig_buf desc = { 0 }, body = { 0 }, out = { 0 };
	struct mig_vm_check req = { 0 };
	struct mig_vm_ref ref = { 0 };
	size_t n;
	int r;

	memset(ret, 0, sizeof(*ret));
	r = mig_client_open(o->src, o->key_file, &src, err);
	if (r < 0)
		return mig_error_prefix(err, "the source agent");
	r = pick_vm(&src, o->vm, ret->vm, err);
	if (r >= 0) {
		str_copy(ref.name, sizeof(ref.name), ret->vm);
		r = mig_client_call(&src, MIG_OP_VM_DESCRIBE, &ref, sizeof(ref), &desc, err);
	}
	mig_client_close(&src);
	if (r < 0)
		goto out;
	if (desc.len >= sizeof(req.vm)) {
		memcpy(&req.vm, desc.data, sizeof(req.vm));
		mig_wire_le(&mig_wl_vm_described, &req.vm, 1);
	}
	if (desc.len < sizeof(req.vm) || desc.len - sizeof(req.vm) !=
	    (size_t)req.vm.nr_devices * sizeof(struct mig_manifest_entry)) {
		r = mig_error_set(err, -EPROTO, "the source agent's description of %s is %zu bytes, "
				  "not what it says it holds", ret->vm, desc.len);
		goto out;
	}
	str_copy(req.name, sizeof(req.name), ret->vm);
	mig_wire_le(&mig_wl_vm_check, &req, 1);   /* the manifest after it is as it came */
	if (mig_buf_append(&body, &req, sizeof(req)) < 0 ||
	    mig_buf_append(&body, desc.data + sizeof(req.vm), desc.len - sizeof(req.vm)) < 0) {
		r = mig_error_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	r = mig_client_open(o->dst, o->key_file, &dst, err);
	if (r < 0) {
		mig_error_prefix(err, "the destination agent");
		goto out;
	}
	r = mig_client_call(&dst, MIG_OP_VM_CHECK, body.data, body.len, &out, err);
	mig_client_close(&dst);
	if (r < 0)
		goto out;
	if (out.len >= sizeof(ret->head)) {
		memcpy(&ret->head, out.data, sizeof(ret->head));
		mig_wire_le(&mig_wl_check_reply, &ret->head, 1);
	}
	if (out.len < sizeof(ret->head) || ret->head.nr_results > MIG_CHECK_RESULTS_MAX ||
	    out.len - sizeof(ret->head) != (size_t)ret->head.nr_results * sizeof(*ret->res)) {
		r = mig_error_set(err, -EPROTO, "the destination agent's verdicts are %zu bytes, "
				  "not what it says they hold", out.len);
		goto out;
	}
	n = ret->head.nr_results;
	ret->res = calloc(n ? n : 1, sizeof(*ret->res));
	if (!ret->res) {
		r = mig_error_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	memcpy(ret->res, out.data + sizeof(ret->head), n * sizeof(*ret->res));
	mig_wire_le(&mig_wl_check_result, ret->res, n);
	for (size_t i = 0; i < n; i++) {
		ret->res[i].policy[sizeof(ret->res[i].policy) - 1] = '\0';
		ret->res[i].msg[sizeof(ret->res[i].msg) - 1] = '\0';
	}
	r = 0;
out:
	mig_buf_free(&desc);
	mig_buf_free(&body);
	mig_buf_free(&out);
	return r;
}

void mig_check_report_free(struct mig_check_report *r)
{
	free(r->res);
	r->res = NULL;
}
