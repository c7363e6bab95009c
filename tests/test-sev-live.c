// SPDX-License-Identifier: MIT
/*
 * SEV lab guests between two real agents (docs/devices.md §12): migrated
 * through the psp-sim firmware and verified (their pages' status flipping
 * while they go), refused while the guest has not set KVM_MIGRATION_READY,
 * rolled back when it clears it mid-migration, and refused on the kernel
 * backend of a host without SEV.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "lab-fixture.h"
#include "proc-fixture.h"
#include "sev/sev.h"

const int test_requires_kvm = 1;

static void expect_vm_on(const char *ep, const char *name, const char *state, bool there)
{
	struct run_result r;
	char args[256];

	snprintf(args, sizeof(args), "vm list %s", ep);
	proc_run(args, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);
	if (!there) {
		cr_assert_null(strstr(r.out, name), "%s is on %s: %s", name, ep, r.out);
		return;
	}
	cr_assert_not_null(strstr(r.out, name), "%s is not on %s: %s", name, ep, r.out);
	cr_assert_not_null(strstr(r.out, state), "%s is not %s on %s: %s", name, state, ep, r.out);
}

/* Create SEV guest NAME on the pair's source with these lab keys, then
 * migrate it with these start options. */
static void create_and_start(const struct proc_pair *t, const char *name, const char *keys,
			     const char *opts, struct run_result *r)
{
	char args[512];

	snprintf(args, sizeof(args), "vm create %s --name %s --lab mem=256M,vcpus=2,wss=8M,sev=sim,%s",
		 t->src, name, keys);
	proc_run(args, r);
	cr_assert_eq(r->status, 0, "%s", r->err);
	snprintf(args, sizeof(args), "start %s %s --vm %s %s", t->src, t->dst, name, opts);
	proc_run(args, r);
}

/* Verified: both digests of the guest's decrypted view match, its self-check
 * passed on the destination, and the destination's load took every page
 * in the form the guest has it in (with flips every 5 ms while it moved). */
Test(sev_live, a_psp_sim_guest_migrates_verified, .timeout = 300)
{
	struct run_result r;

	proc_run("start local local --json --lab mem=256M,vcpus=2,wss=8M,sev=sim,sev-flip=5ms",
		 &r);
	cr_assert_eq(r.status, 0, "%s\n%s", r.err, r.out);
	json_expect_str(r.out, "result", "completed");
	cr_assert_not_null(strstr(r.out, "\"match\":true"), "%s", r.out);
	cr_assert_eq(json_num(r.out, "dst_selfcheck_errors"), 0, "%s", r.out);
	cr_assert_not_null(strstr(r.out, "\"class\":\"sev\",\"side\":\"source\",\"id\":0,"
				      "\"state\":\"finished\""), "%s", r.out);
	/* the map came by the hypercall where the host forwards it */
	cr_assert(strstr(r.out, "map-by-doorbell") || strstr(r.out, "map-by-hypercall"), "%s",
		  r.out);
}

/* A guest that has not consented is not migrated: refused at SETUP, with
 * the reason, and it runs where it was. */
Test(sev_live, a_guest_without_ready_is_refused_and_stays, .timeout = 300)
{
	struct proc_pair t;
	struct run_result r;

	proc_pair_up(&t, NULL, NULL);
	create_and_start(&t, "shy", "sev-ready=1h", "", &r);
	cr_assert_neq(r.status, 0);
	cr_assert_not_null(strstr(r.out, "has not set KVM_MIGRATION_READY"), "%s", r.out);
	expect_vm_on(t.src, "shy", "running", true);
	expect_vm_on(t.dst, "shy", NULL, false);
	proc_pair_down(&t);
}

/* The guest clears READY while its pages are on their way: the migration
 * rolls back (SEND_CANCEL) and the guest runs on the source.  The clear
 * comes 8 s after the guest set READY (a loaded host takes seconds to
 * prepare the destination), the migration is capped to take far longer
 * (256 MiB at 12 MiB/s); a migration that started so late the guest had
 * withdrawn already is tried again with a fresh guest. */
Test(sev_live, clearing_ready_mid_migration_rolls_back, .timeout = 300)
{
	struct proc_pair t;
	struct run_result r;
	char name[32];

	proc_pair_up(&t, NULL, NULL);
	for (int attempt = 0;; attempt++) {
		snprintf(name, sizeof(name), "fickle%d", attempt);
		create_and_start(&t, name, "sev-ready=0,sev-unready=8s", "--max-bandwidth 12M", &r);
		cr_assert_neq(r.status, 0, "the migration completed: %s", r.out);
		if (strstr(r.out, "has not set KVM_MIGRATION_READY") && attempt < 3)
			continue;
		break;
	}
	cr_assert_not_null(strstr(r.out, "cleared KVM_MIGRATION_READY"), "%s", r.out);
	cr_assert_not_null(strstr(r.out, "now runs on the source"), "%s", r.out);
	expect_vm_on(t.src, "fickle", "running", true);
	expect_vm_on(t.dst, "fickle", NULL, false);
	proc_pair_down(&t);
}

/* No SEV on this host: the kernel backend says so, and what to do. */
Test(sev_live, the_kernel_backend_refuses_without_sev, .timeout = 120)
{
	struct run_result r;

	proc_run("start local local --lab mem=64M,vcpus=2,wss=4M,sev=kernel", &r);
	if (r.status == 0)
		cr_skip_test("this host has SEV");
	cr_assert_not_null(strstr(r.err, "this host has no SEV"), "%s", r.err);
	cr_assert_not_null(strstr(r.err, "sev=sim"), "%s", r.err);
}

/* Bad SEV lab specs are refused with what to give. */
Test(sev_live, bad_sev_specs_say_what_to_give, .timeout = 60)
{
	proc_expect_usage("start local local --lab sev=maybe", "give sev=sim");
	proc_expect_usage("start local local --lab sev=sim,vcpus=1", "needs 2 or more");
	proc_expect_usage("start local local --lab sev=sim,sev-report=carrier",
			  "sev-report=carrier");
	proc_expect_usage("start local local --lab sev=sim,sev-ready=soon", "not a duration");
}

/* The backend itself, on this host's KVM. */
Test(sev_live, the_kernel_firmware_backend_says_there_is_no_sev)
{
	struct sev_fw *fw = NULL;
	struct mig_error err = { 0 };
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), vm;
	int r;

	if (kvm < 0)
		cr_skip_test("no /dev/kvm");
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	cr_assert_geq(vm, 0);
	r = sev_fw_kernel_create(vm, &fw, &err);
	if (r == 0)
		cr_skip_test("this host has SEV");
	cr_assert_eq(r, -ENOTSUP, "%s", err.msg);
	cr_assert(strstr(err.msg, "this host has no SEV"), "%s", err.msg);
	cr_assert(strstr(err.msg, "sev=sim"), "%s", err.msg);
	close(vm);
	close(kvm);
}
