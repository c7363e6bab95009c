// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: a REQUEST frame's payload as the agent takes it
 * (docs/chaos.md, "Fuzzing"): agent_request_parse(), the dispatch the
 * session runs before any handler (operation, body size), then what the
 * handlers check of a body before they act on it: its byte order, the VM
 * name, the lab VM's description and spec, the manifest entries, a chaos
 * agent's fault plan.
 */
#include <stdint.h>
#include <string.h>

#include <migrate/agent.h>
#include <migrate/fault.h>
#include <migrate/lab.h>
#include <migrate/vm.h>
#include <migrate/wire-order.h>

#include "fuzz.h"

/* A description that passed lab_from_wire() turns back into the same. */
static void lab_wire_check(const struct mig_lab_wire *w)
{
	struct mig_error err = { 0 };
	struct lab_config cfg;

	if (lab_from_wire(w, &cfg, &err) == 0) {
		struct lab_config again;
		struct mig_lab_wire w2;

		lab_to_wire(&cfg, &w2);
		FUZZ_ASSERT(lab_from_wire(&w2, &again, &err) == 0);
		lab_config_check(&cfg, &err);
	}
	fuzz_error_ok(&err);
}

static void body_check(const struct agent_request *rq)
{
	struct mig_error err = { 0 };

	switch (rq->op) {
	case MIG_OP_VM_CREATE: {
		struct mig_vm_create b;
		struct lab_config cfg;

		memcpy(&b, rq->body, sizeof(b));
		if (!mig_vm_name_ok(b.name, sizeof(b.name)))
			break;
		FUZZ_ASSERT(memchr(b.name, '\0', sizeof(b.name)));
		b.spec[sizeof(b.spec) - 1] = '\0';
		lab_config_default(&cfg);
		if (b.spec[0] && lab_spec_parse(b.spec, &cfg, &err) == 0)
			lab_config_check(&cfg, &err);
		fuzz_error_ok(&err);
		break;
	}
	case MIG_OP_VM_DESTROY:
	case MIG_OP_VM_DESCRIBE: {
		struct mig_vm_ref b;

		memcpy(&b, rq->body, sizeof(b));
		if (mig_vm_name_ok(b.name, sizeof(b.name)))
			FUZZ_ASSERT(memchr(b.name, '\0', sizeof(b.name)));
		break;
	}
	case MIG_OP_MIG_INCOMING: {
		struct mig_incoming b;

		memcpy(&b, rq->body, sizeof(b));
		mig_wire_le(&mig_wl_incoming, &b, 1);
		if (mig_vm_name_ok(b.name, sizeof(b.name)))
			lab_wire_check(&b.lab);
		break;
	}
	case MIG_OP_VM_RESOLVE: {
		struct mig_vm_resolve b;

		memcpy(&b, rq->body, sizeof(b));
		mig_wire_le(&mig_wl_vm_resolve, &b, 1);
		mig_vm_name_ok(b.name, sizeof(b.name));
		break;
	}
	case MIG_OP_VM_CHECK: {
		size_t n = (rq->body_len - sizeof(struct mig_vm_check)) /
			   sizeof(struct mig_manifest_entry);
		struct mig_manifest_entry *e;
		struct mig_vm_check b;

		memcpy(&b, rq->body, sizeof(b));
		mig_wire_le(&mig_wl_vm_check, &b, 1);
		if (!mig_vm_name_ok(b.name, sizeof(b.name)))
			break;
		lab_wire_check(&b.vm.lab);
		e = malloc(n ? n * sizeof(*e) : 1);
		FUZZ_ASSERT(e);
		memcpy(e, rq->body + sizeof(b), n * sizeof(*e));
		mig_wire_le(&mig_wl_manifest_entry, e, n);
		free(e);
		break;
	}
	case MIG_OP_FAULT_ARM: {
		struct mig_fault_plan b;

		/* what a --chaos agent checks before it keeps a plan; a plan it
		 * keeps names its VM within the field and fires from the first point */
		memcpy(&b, rq->body, sizeof(b));
		mig_wire_le(&mig_wl_fault_plan, &b, 1);
		if (mig_fault_plan_check(&b, &err) == 0) {
			FUZZ_ASSERT(memchr(b.vm, '\0', sizeof(b.vm)) && b.vm[0]);
			FUZZ_ASSERT(b.action < _MIG_FAULT_A_END);
		}
		fuzz_error_ok(&err);
		break;
	}
	default:
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mig_error err = { 0 };
	struct agent_request rq;
	uint8_t *payload;

	/* exactly the payload, in a buffer of its own, as the receiver has it */
	payload = malloc(size ? size : 1);
	FUZZ_ASSERT(payload);
	memcpy(payload, data, size);
	if (agent_request_parse(MIG_FRAME_REQUEST, payload, size, &rq, &err) == 0) {
		FUZZ_ASSERT(rq.op > MIG_OP_INVALID && rq.op < _MIG_OP_END);
		body_check(&rq);
	} else {
		FUZZ_ASSERT(err.code == -EPROTO || err.code == -EOPNOTSUPP ||
			    err.code == -EINVAL);
	}
	fuzz_error_ok(&err);
	free(payload);
	return 0;
}
