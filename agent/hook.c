// SPDX-License-Identifier: MIT
/*
 * MIG_OP_HOOK: one call of libvirt's qemu hook on this host
 * (docs/libvirt.md).  Every call is journaled under the domain's
 * UUID; an incoming migration or a restore also gets the host checks
 * (libvirt/host-check.c) against this host, with the agent's
 * --host-profile, and the verdict goes back for the hook to give libvirt.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <migrate/lv-hook.h>
#include <migrate/wire-order.h>

#include "agent-internal.h"
#include "journal.h"
#include "util.h"

/* Every refusal in the log (the hook's one line names only the first). */
static void log_report(struct agent *a, const struct mig_hook_call *c, const char *uuid,
		       const struct lvh_report *rep)
{
	unsigned shown = rep->refused < LVH_MAX_REFUSALS ? rep->refused : LVH_MAX_REFUSALS;

	agent_log(a, "hook: %s of domain %s (%s): %u check%s refused", mig_hook_op_to_string(c->op),
		  c->domain, uuid, rep->refused, rep->refused == 1 ? "" : "s");
	for (unsigned i = 0; i < shown; i++)
		agent_log(a, "hook: %s refuses domain %s: %s", rep->refusals[i].check, c->domain,
			  rep->refusals[i].msg);
	if (rep->refused > shown)
		agent_log(a, "hook: %u more refusals not listed", rep->refused - shown);
	if (rep->unchecked[0])
		agent_log(a, "hook: not checked for domain %s: %s", c->domain, rep->unchecked);
}

static int hook_check(struct agent *a, const struct mig_hook_call *c, const struct lvh_domain *d,
		      struct mig_hook_verdict *v)
{
	struct lvh_report *rep = malloc(sizeof(*rep));
	struct lvh_host host;

	if (!rep)
		return -ENOMEM;
	lvh_host_probe(compat_profile_get(), &host);
	str_copy(v->host, sizeof(v->host), host.name);
	v->status = lvh_check(d, &host, rep);
	v->refused = rep->refused;
	if (rep->refused)
		str_copy(v->msg, sizeof(v->msg), rep->refusals[0].msg);
	log_report(a, c, d->uuid, rep);
	free(rep);
	return 0;
}

int agent_op_hook(struct session *s, const uint8_t *body)
{
	struct agent *a = s->a;
	struct mig_hook_call c;
	struct mig_hook_verdict v = { 0 };
	struct mig_error err = { 0 };
	struct lvh_domain *d;
	size_t n = s->body_len - sizeof(c);
	int r;

	memcpy(&c, body, sizeof(c));
	mig_wire_le(&mig_wl_hook_call, &c, 1);
	if (!memchr(c.domain, '\0', sizeof(c.domain)))
		return agent_reply(s, -EINVAL, "HOOK: the domain name is not terminated", NULL, 0);
	if (!mig_hook_op_to_string(c.op))
		return agent_reply(s, -EINVAL, "HOOK: unknown hook operation", NULL, 0);
	if (c.xml_len != n)
		return agent_reply(s, -EINVAL, "HOOK: the XML's length does not match xml_len",
				   NULL, 0);
	if (n > MIG_HOOK_XML_MAX)
		return agent_reply(s, -E2BIG, "HOOK: the domain XML is over the "
				   "MIG_HOOK_XML_MAX bytes a call carries", NULL, 0);
	d = malloc(sizeof(*d));
	if (!d)
		return agent_reply(s, -ENOMEM, "out of memory", NULL, 0);
	r = lvh_domain_parse((const char *)body + sizeof(c), n, d, &err);
	if (r < 0) {
		free(d);
		agent_log(a, "hook: %s of domain %s: %s", mig_hook_op_to_string(c.op), c.domain,
			  err.msg);
		return agent_reply(s, r, err.msg, NULL, 0);
	}
	str_copy(v.uuid, sizeof(v.uuid), d->uuid);
	if (d->uuid[0]) {
		v.seq = agent_journal_hook(a->journal, d->uuid, c.op);
		v.journaled = 1;
	}
	if (c.flags & MIG_HOOK_F_CHECK)
		r = hook_check(a, &c, d, &v);
	free(d);
	if (r < 0)
		return agent_reply(s, r, "out of memory", NULL, 0);
	mig_wire_le(&mig_wl_hook_verdict, &v, 1);
	return agent_reply(s, 0, NULL, &v, sizeof(v));
}
