// SPDX-License-Identifier: MIT
/*
 * `start`'s choreography as a library call (mig_start()), the way a libvirt
 * hook or a chaos runner uses it: two real agents, no migratectl process in
 * between.  The steps come through the callback in order, the RESULT comes
 * back with its devices, and a VM the caller's check refuses is left
 * running where it was.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <migrate/policy.h>
#include <migrate/start.h>

#include "lab-fixture.h"
#include "proc-fixture.h"

const int test_requires_kvm = 1;

struct steps {
	enum mig_start_step seen[4096];
	unsigned n;
	char name_at_create[MIG_NAME_MAX];
};

static void record(void *arg, enum mig_start_step step, const struct mig_start_result *st,
		   const struct mig_event *ev)
{
	struct steps *s = arg;

	if (step == MIG_START_CREATING_VM)
		snprintf(s->name_at_create, sizeof(s->name_at_create), "%s", st->name);
	if (step == MIG_START_PROGRESS && !ev)
		return;   /* a PROGRESS without its event: not recorded, so the test fails */
	if (s->n < sizeof(s->seen) / sizeof(s->seen[0]))
		s->seen[s->n++] = step;
}

static int first(const struct steps *s, enum mig_start_step step)
{
	for (unsigned i = 0; i < s->n; i++)
		if (s->seen[i] == step)
			return (int)i;
	return -1;
}

static struct mig_start_opts opts(const struct proc_pair *t, struct steps *s)
{
	return (struct mig_start_opts){
		.src = t->src, .dst = t->dst, .lab_spec = "mem=64M,vcpus=1,wss=4M",
		.params = { .streams = 2, .codec = XPORT_CODEC_NONE, .verify = 1,
			    .checksum = MIG_CHECKSUM_AUTO, .downtime_limit_ms = 300,
			    .timeout_action = CONV_TIMEOUT_ABORT },
		.on_step = record, .arg = s,
	};
}

Test(start, a_whole_migration_from_one_call, .timeout = 120)
{
	static struct mig_start_result m;
	static struct steps s;
	struct proc_pair t;
	struct mig_start_opts o;
	struct run_result r;
	char args[256];

	proc_pair_up(&t, NULL, NULL);
	o = opts(&t, &s);
	cr_assert_eq(mig_start(&o, &m), 0, "%s / %s", m.why, m.res.error);
	cr_assert_eq(m.outcome, MIG_START_RESULT);
	cr_assert_eq(m.res.result, MIG_RESULT_COMPLETED);
	cr_assert_eq(m.res.owner, MIG_OWNER_DESTINATION);
	cr_assert_eq(m.res.verified, 1);
	cr_assert_eq(m.res.nr_devices, 3, "memory, one vCPU, the platform");
	cr_assert_str_eq(s.name_at_create, m.name);
	/* created, started, some progress: in that order */
	cr_assert_eq(first(&s, MIG_START_CREATING_VM), 0);
	cr_assert_gt(first(&s, MIG_START_STARTED), 0);
	cr_assert_gt(first(&s, MIG_START_PROGRESS), first(&s, MIG_START_STARTED));
	cr_assert_eq(first(&s, MIG_START_CANCELLING), -1);
	/* the VM runs on the destination, and only there */
	snprintf(args, sizeof(args), "vm list %s", t.dst);
	proc_run(args, &r);
	cr_assert_not_null(strstr(r.out, m.name), "%s", r.out);
	snprintf(args, sizeof(args), "vm list %s", t.src);
	proc_run(args, &r);
	cr_assert_null(strstr(r.out, m.name), "%s", r.out);
	proc_pair_down(&t);
}

static int refuse(void *arg, const struct mig_vm_info *v, char *why, size_t n)
{
	(void)arg;
	snprintf(why, n, "refused by the caller: %u vCPU", v->vcpus);
	return -1;
}

Test(start, a_vm_the_caller_refuses_stays_where_it_was, .timeout = 120)
{
	static struct mig_start_result m;
	static struct steps s;
	struct proc_pair t;
	struct mig_start_opts o;
	struct run_result r;
	char args[256];

	proc_pair_up(&t, NULL, NULL);
	snprintf(args, sizeof(args), "vm create %s --name keep --lab mem=64M,vcpus=1,wss=4M", t.src);
	proc_run(args, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);
	o = opts(&t, &s);
	o.vm = "keep";
	o.check_vm = refuse;
	cr_assert_lt(mig_start(&o, &m), 0);
	cr_assert_eq(m.outcome, MIG_START_NOT_STARTED);
	cr_assert(m.usage);
	cr_assert_str_eq(m.why, "refused by the caller: 1 vCPU");
	cr_assert_eq(s.n, 0, "no step was taken");
	snprintf(args, sizeof(args), "vm list %s", t.src);
	proc_run(args, &r);
	cr_assert_not_null(strstr(r.out, "keep"), "%s", r.out);
	cr_assert_not_null(strstr(r.out, "running"), "%s", r.out);
	snprintf(args, sizeof(args), "vm list %s", t.dst);
	proc_run(args, &r);
	cr_assert_null(strstr(r.out, "keep"), "the destination prepared it: %s", r.out);
	proc_pair_down(&t);
}
