// SPDX-License-Identifier: MIT
/*
 * Same-host hand-over (docs/phases.md, "Same-host hand-over"): between two
 * agents on this host, guest RAM's memfd goes to the destination over the
 * unix stream instead of a copy.  A hand-over is verified (equal digests, a
 * healthy guest whose self-check keeps passing on the destination) and
 * takes a fraction of a copy of the same VM measured in the same test;
 * --handover never copies; a tcp destination falls back to copying and
 * says why; --handover always is refused where it cannot be met, with the
 * VM left running on the source.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proc-fixture.h"

const int test_requires_kvm = 1;

static void run(const char *args, struct run_result *r)
{
	proc_run(args, r);
}

static bool json_true(const char *json, const char *key)
{
	char buf[16];

	cr_assert_not_null(json_field(json, key, buf, sizeof(buf)), "no \"%s\" in %s", key, json);
	return !strcmp(buf, "true");
}

/* The VMs an agent lists, as JSON. */
static void vm_list(const char *ep, const char *key_opt, struct run_result *r)
{
	char args[256];

	snprintf(args, sizeof(args), "vm list %s --json %s", ep, key_opt ? key_opt : "");
	run(args, r);
	cr_assert_eq(r->status, 0, "%s", r->err);
}

#define SPEC "mem=256M,vcpus=2,wss=16M"

Test(handover, local_local_is_handed_over_and_verified, .timeout = 300)
{
	struct run_result r;

	run("start local local --json --verify --lab " SPEC, &r);
	cr_assert_eq(r.status, 0, "exit %d: %s\n%s", r.status, r.err, r.out);
	json_expect_str(r.out, "result", "completed");
	json_expect_str(r.out, "owner", "destination");
	cr_assert(json_true(r.out, "used"), "RAM was not handed over: %s", r.out);
	json_expect_str(r.out, "requested", "auto");
	/* nothing of RAM moved: only the frames and the device state */
	cr_assert_eq(json_num(r.out, "transferred_bytes"), 0, "%s", r.out);
	cr_assert_eq(json_num(r.out, "normal_pages"), 0, "%s", r.out);
	cr_assert_lt(json_num(r.out, "wire_bytes"), 1 << 20, "%s", r.out);
	cr_assert_eq(json_num(r.out, "rounds"), 0, "%s", r.out);
	/* the verification path ran, and the guest is healthy there */
	cr_assert(json_true(r.out, "match"), "%s", r.out);
	cr_assert_eq(json_num(r.out, "dst_selfcheck_errors"), 0, "%s", r.out);
	cr_assert_gt(json_num(r.out, "dst_passes_after"), json_num(r.out, "dst_passes_at_start"),
		     "the guest made no progress on the destination: %s", r.out);
}

/* A hand-over and a copy of the same VM, one after the other: the copy moves
 * all of RAM, the hand-over none of it, in a fraction of the time.  No
 * verification in either: its hashing and health wait would dominate both. */
Test(handover, takes_a_fraction_of_a_copy_which_never_still_makes, .timeout = 300)
{
	static struct run_result h, c;
	double ht, ct;

	run("start local local --json --no-verify --lab " SPEC, &h);
	cr_assert_eq(h.status, 0, "exit %d: %s\n%s", h.status, h.err, h.out);
	cr_assert(json_true(h.out, "used"), "RAM was not handed over: %s", h.out);
	run("start local local --json --no-verify --handover never --lab " SPEC, &c);
	cr_assert_eq(c.status, 0, "exit %d: %s\n%s", c.status, c.err, c.out);
	json_expect_str(c.out, "result", "completed");
	cr_assert_not(json_true(c.out, "used"), "--handover never handed over: %s", c.out);
	json_expect_str(c.out, "requested", "never");
	json_expect_str(c.out, "reason", "--handover never");
	/* the copy carried RAM (its pages are the guest's non-zero fill) */
	cr_assert_geq(json_num(c.out, "transferred_bytes"), json_num(c.out, "total_bytes") / 2,
		      "%s", c.out);
	cr_assert_geq(json_num(c.out, "rounds"), 1, "%s", c.out);
	ht = json_num(h.out, "total_ms");
	ct = json_num(c.out, "total_ms");
	cr_assert_lt(ht * 3, ct, "hand-over %.0f ms is not a fraction of the copy's %.0f ms",
		     ht, ct);
}

/* Agents on unix sockets (a proc_pair): SRC with a VM made by `vm create`
 * (anonymous RAM) and DST; a tcp agent too, with a key. */
struct trio {
	struct proc_pair p;
	char tcp[64], key[96], key_opt[128];
	pid_t c;
};

static void trio_up(struct trio *t)
{
	struct run_result r;
	char args[512];

	proc_pair_up(&t->p, NULL, NULL);
	snprintf(t->tcp, sizeof(t->tcp), "tcp://127.0.0.1:%d", proc_free_port());
	snprintf(t->key, sizeof(t->key), "%s/key", t->p.dir);
	snprintf(t->key_opt, sizeof(t->key_opt), "--key-file %s", t->key);
	make_key_file(t->key, 7);
	t->c = proc_agent(t->tcp, t->key);
	proc_wait_agent(t->tcp, t->key_opt);
	snprintf(args, sizeof(args), "vm create %s --name v --lab mem=64M,vcpus=1,wss=4M",
		 t->p.src);
	run(args, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);
}

static void trio_down(struct trio *t)
{
	proc_stop(t->c);
	unlink(t->key);
	proc_pair_down(&t->p);
}

/* The VM runs on SRC, and neither destination holds one. */
static void expect_on_source(const struct trio *t)
{
	struct run_result r;

	vm_list(t->p.src, NULL, &r);
	cr_assert_not_null(strstr(r.out, "\"state\":\"running\""), "%s", r.out);
	proc_wait_no_migrations(t->p.dst, NULL);
	vm_list(t->p.dst, NULL, &r);
	cr_assert_str_eq(r.out, "[]\n", "%s", r.out);
	proc_wait_no_migrations(t->tcp, t->key_opt);
	vm_list(t->tcp, t->key_opt, &r);
	cr_assert_str_eq(r.out, "[]\n", "%s", r.out);
}

Test(handover, refusals_and_fallbacks, .timeout = 300)
{
	static struct run_result r;
	struct trio t;
	char args[512];

	trio_up(&t);
	/* always, to a tcp destination: a usage error, nothing started */
	snprintf(args, sizeof(args), "start %s %s --vm v --handover always --json %s", t.p.src,
		 t.tcp, t.key_opt);
	run(args, &r);
	cr_assert_eq(r.status, 2, "exit %d: %s\n%s", r.status, r.err, r.out);
	cr_assert_not_null(strstr(r.err, "--handover always: guest RAM can be handed over only "
				  "between two agents on this host"), "%s", r.err);
	expect_on_source(&t);

	/* always, between unix agents, for a VM whose RAM is anonymous: SETUP
	 * refuses, before anything moved; the VM runs on where it was */
	snprintf(args, sizeof(args), "start %s %s --vm v --handover always --json", t.p.src, t.p.dst);
	run(args, &r);
	cr_assert_eq(r.status, 1, "exit %d: %s\n%s", r.status, r.err, r.out);
	json_expect_str(r.out, "result", "failed");
	json_expect_str(r.out, "owner", "source");
	cr_assert_not_null(strstr(r.out, "--handover always: guest RAM cannot be handed over: "
				  "the VM's RAM is not in a memfd"), "%s", r.out);
	expect_on_source(&t);

	/* auto, the same VM: copied, and the summary says why */
	snprintf(args, sizeof(args), "start %s %s --vm v --json", t.p.src, t.p.dst);
	run(args, &r);
	cr_assert_eq(r.status, 0, "exit %d: %s\n%s", r.status, r.err, r.out);
	cr_assert_not(json_true(r.out, "used"), "%s", r.out);
	cr_assert_not_null(strstr(r.out, "\"reason\":\"the VM's RAM is not in a memfd"), "%s",
			   r.out);
	cr_assert_gt(json_num(r.out, "transferred_bytes"), 0, "%s", r.out);

	/* auto, to a tcp destination: copied, and why */
	snprintf(args, sizeof(args), "start local %s --json --lab mem=64M,vcpus=1,wss=4M %s",
		 t.tcp, t.key_opt);
	run(args, &r);
	cr_assert_eq(r.status, 0, "exit %d: %s\n%s", r.status, r.err, r.out);
	cr_assert_not(json_true(r.out, "used"), "%s", r.out);
	cr_assert_not_null(strstr(r.out, "\"reason\":\"the migration streams are not unix "
				  "sockets"), "%s", r.out);
	cr_assert_gt(json_num(r.out, "transferred_bytes"), 0, "%s", r.out);
	trio_down(&t);
}
