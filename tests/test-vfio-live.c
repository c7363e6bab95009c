// SPDX-License-Identifier: MIT
/*
 * Lab VMs with sim VFIO devices migrated between two agent processes, as a
 * user runs them: `migratectl start ... --lab ...,vfio=N`.  Each device
 * DMA-writes guest pages that only its own log reports, migrates a table
 * that changes while it runs, and checks itself on the destination; the
 * RAM digests must match at switchover.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdlib.h>

#include "lab-fixture.h"
#include "proc-fixture.h"

const int test_requires_kvm = 1;

static void expect_verified(const struct run_result *r, const char *what, unsigned devices)
{
	char want[64];

	cr_assert_eq(r->status, 0, "%s: exit %d\nstdout: %s\nstderr: %s", what, r->status, r->out,
		     r->err);
	json_expect_str(r->out, "result", "completed");
	json_expect_str(r->out, "owner", "destination");
	json_expect_str(r->out, "match", "true");
	cr_assert_eq(json_num(r->out, "dst_selfcheck_errors"), 0, "%s: %s", what, r->out);
	for (unsigned i = 0; i < devices; i++) {
		const char *d;

		snprintf(want, sizeof(want), "\"class\":\"vfio\",\"side\":\"source\",\"id\":%u", i);
		d = strstr(r->out, want);
		cr_assert_not_null(d, "%s: no vfio %u in %s", what, i, r->out);
		/* its table went, at least once */
		cr_assert_gt(json_num(d, "bytes"), 256 * 1024, "%s: %s", what, d);
		json_expect_str(d, "state", "stop");
	}
	if (devices)
		cr_assert_not_null(strstr(r->out, "\"notes\":["), "%s", r->out);
	snprintf(want, sizeof(want), "\"class\":\"vfio\",\"side\":\"source\",\"id\":%u", devices);
	cr_assert_null(strstr(r->out, want), "%s: more devices than asked for", what);
}

Test(vfio_live, one_device, .timeout = 120)
{
	struct run_result r;

	proc_run("start local local --handover never --json --lab mem=256M,vcpus=1,wss=16M,vfio=1", &r);
	expect_verified(&r, "one device", 1);
}

/* Three devices writing 5000 pages a second each: every round has DMA
 * pages only the devices' logs report. */
Test(vfio_live, three_devices_busy_dma, .timeout = 120)
{
	struct run_result r;

	proc_run("start local local --handover never --json --lab mem=256M,vcpus=2,wss=16M,vfio=3,vfio-rate=5000",
		 &r);
	expect_verified(&r, "three devices", 3);
}

/* A v1-protocol device among v2 ones (the last of three). */
Test(vfio_live, a_v1_device_among_v2_ones, .timeout = 120)
{
	struct run_result r;
	const char *d;

	proc_run("start local local --handover never --json --lab mem=256M,vcpus=1,wss=16M,vfio=3,vfio-v1=1", &r);
	expect_verified(&r, "v1 and v2", 3);
	d = strstr(r.out, "\"class\":\"vfio\",\"side\":\"source\",\"id\":2");
	cr_assert_not_null(d);
	/* v1 has no P2P and no DMA log of its own */
	cr_assert_not_null(strstr(d, "\"notes\":[\"no-p2p\",\"no-dma-log\"]"), "%s", d);
}

/* Devices that cannot log their DMA: all they reach goes at the end. */
Test(vfio_live, devices_without_a_dma_log, .timeout = 120)
{
	struct run_result r;

	proc_run("start local local --handover never --json --lab mem=256M,vcpus=1,wss=16M,vfio=2,vfio-log=off",
		 &r);
	expect_verified(&r, "no DMA log", 2);
	cr_assert_not_null(strstr(r.out, "\"notes\":[\"no-dma-log\"]"), "the run says so: %s",
			   r.out);
}

/* Devices without P2P, and without pre-copy: the kernel's paths without
 * those states. */
Test(vfio_live, devices_with_fewer_features, .timeout = 180)
{
	static const char *const flags[] = { "1", "3", "5" };

	for (unsigned i = 0; i < 3; i++) {
		struct run_result r;
		char args[256], what[64];

		snprintf(args, sizeof(args), "start local local --handover never --json --lab "
			 "mem=128M,vcpus=1,wss=8M,vfio=2,vfio-flags=%s", flags[i]);
		snprintf(what, sizeof(what), "vfio-flags=%s", flags[i]);
		proc_run(args, &r);
		expect_verified(&r, what, 2);
		/* a device without P2P: the run says its P2P arcs were skipped */
		cr_assert_eq(strstr(r.out, "\"no-p2p\"") != NULL, !(atoi(flags[i]) & 2), "%s: %s",
			     what, r.out);
	}
}

/*
 * Post-copy cannot serve a device's DMA into a page still missing: asked
 * for outright, or as a stall's action, it is refused before anything
 * moves, naming the device, and the VM runs on at the source.  auto, the
 * default, does not go post-copy for it: the same VM then migrates.
 */
Test(vfio_live, post_copy_is_refused_and_the_vm_stays, .timeout = 180)
{
	static const char *const asks[] = { "--converge postcopy", "--stall-action postcopy" };
	struct run_result r;
	char dir[] = "/tmp/migratectl-test-XXXXXX", ea[128], eb[128], args[512];
	pid_t a, b;

	cr_assert_not_null(mkdtemp(dir));
	a = proc_agent_with_lab(dir, "a.sock", "dma", "mem=128M,vcpus=1,wss=8M,vfio=1", ea,
				sizeof(ea));
	snprintf(eb, sizeof(eb), "unix://%s/b.sock", dir);
	b = proc_agent(eb, NULL);
	proc_wait_agent(eb, NULL);

	for (unsigned i = 0; i < 2; i++) {
		snprintf(args, sizeof(args), "start %s %s --vm dma --handover never --json %s", ea, eb,
			 asks[i]);
		proc_run(args, &r);
		cr_assert_eq(r.status, 1, "%s: exit %d\n%s\n%s", asks[i], r.status, r.out, r.err);
		json_expect_str(r.out, "result", "failed");
		json_expect_str(r.out, "owner", "source");
		cr_assert_not_null(strstr(r.out, "\"error\":\"post-copy: this VM has vfio 0, and its "
					  "device writes guest RAM by DMA"), "%s: %s", asks[i], r.out);
		cr_assert_not_null(strstr(r.out, "use --converge throttle"), "%s", r.out);
		cr_assert_eq(json_num(r.out, "transferred_bytes"), 0, "%s: %s", asks[i], r.out);
		/* the VM the destination prepared is gone by the time start
		 * returns: a start right after it is not refused for its name */
		snprintf(args, sizeof(args), "vm list %s --json", eb);
		proc_run(args, &r);
		cr_assert_null(strstr(r.out, "\"dma\""), "%s: the destination still holds %s",
			       asks[i], r.out);
		proc_expect_vm_runs(ea);
	}

	snprintf(args, sizeof(args), "start %s %s --vm dma --handover never --json", ea, eb);
	proc_run(args, &r);
	expect_verified(&r, "auto after the refusals", 1);
	cr_assert_not_null(strstr(r.out, "\"postcopy\":null"), "%s", r.out);
	proc_stop(b);
	proc_stop(a);
	rmdir(dir);
}

/* A spec the lab refuses, before any agent is asked. */
Test(vfio_live, bad_device_specs_exit_2, .timeout = 60)
{
	static const struct { const char *spec, *says; } c[] = {
		{ "vfio=9", "vfio=9 is not a device count from 0 to 8" },
		{ "vfio=1,vfio-flags=2", "vfio-flags=2 is not a set of VFIO_MIGRATION_* bits" },
		{ "vfio=1,vfio-log=maybe", "vfio-log=maybe" },
		{ "mem=4M,wss=0,vfio=8", "too small for 8 VFIO devices" },
	};

	for (unsigned i = 0; i < 4; i++) {
		struct run_result r;
		char args[256];

		snprintf(args, sizeof(args), "start local local --handover never --lab %s", c[i].spec);
		proc_run(args, &r);
		cr_assert_eq(r.status, 2, "%s: exit %d: %s", c[i].spec, r.status, r.err);
		cr_assert_not_null(strstr(r.err, c[i].says), "%s: %s", c[i].spec, r.err);
	}
}

/*
 * An arc that fails with an errno, on either side, at each stage: the
 * migration fails (exit 1) naming the device and the arc, and the VM runs
 * on the source with every device back in RUNNING.
 */
struct arc_fault {
	char flags[4];
	char fail[64];
	char says[96];
};

ParameterizedTestParameters(vfio_live, a_failing_arc_leaves_the_vm_on_the_source)
{
	static struct arc_fault c[] = {
		{ "7", "src:1:running:pre_copy:EBUSY", "running => pre_copy: Device or resource busy" },
		{ "7", "src:1:pre_copy:pre_copy_p2p:EIO", "pre_copy => pre_copy_p2p: Input/output" },
		{ "7", "src:1:pre_copy_p2p:stop_copy:ENOMEM:error",
		  "pre_copy_p2p => stop_copy: Cannot allocate memory (the device is now error)" },
		{ "3", "src:0:running_p2p:stop:EIO", "running_p2p => stop: Input/output error" },
		{ "3", "src:1:stop:stop_copy:EPERM", "stop => stop_copy: Operation not permitted" },
		{ "7", "dst:1:stop:resuming:ENODEV", "stop => resuming: No such device" },
		{ "7", "dst:0:resuming:stop:EFAULT", "resuming => stop: Bad address" },
		{ "7", "dst:1:stop:running_p2p:EIO", "stop => running_p2p: Input/output error" },
		{ "7", "dst:1:running_p2p:running:EINVAL", "running_p2p => running: Invalid argument" },
	};

	return cr_make_param_array(struct arc_fault, c, sizeof(c) / sizeof(c[0]));
}

ParameterizedTest(struct arc_fault *f, vfio_live, a_failing_arc_leaves_the_vm_on_the_source,
		  .timeout = 120)
{
	struct run_result r;
	char args[256], buf[64];
	const char *d;

	snprintf(args, sizeof(args), "start local local --handover never --json --lab mem=128M,vcpus=1,wss=8M,vfio=2,"
		 "vfio-flags=%s,vfio-fail=%s", f->flags, f->fail);
	proc_run(args, &r);
	cr_assert_eq(r.status, 1, "%s: exit %d\n%s\n%s", f->fail, r.status, r.out, r.err);
	json_expect_str(r.out, "result", "failed");
	json_expect_str(r.out, "owner", "source");
	cr_assert_not_null(strstr(r.out, f->says), "%s: %s", f->fail, r.out);
	for (unsigned i = 0; i < 2; i++) {
		snprintf(buf, sizeof(buf), "\"class\":\"vfio\",\"side\":\"source\",\"id\":%u", i);
		d = strstr(r.out, buf);
		cr_assert_not_null(d, "%s", r.out);
		json_expect_str(d, "state", "running");
	}
	d = strstr(r.out, "\"class\":\"vcpu\"");
	cr_assert_not_null(d);
	json_expect_str(d, "state", "running");
}

#if HAVE_CCW
/* Channel I/O subchannels next to a VFIO device: each quiesced idle, every
 * interrupt delivered on one side or the other (their self-checks count
 * with the guest's). */
Test(vfio_live, channel_io_subchannels, .timeout = 120)
{
	struct run_result r;

	proc_run("start local local --handover never --json --lab mem=256M,vcpus=1,wss=16M,vfio=1,ccw=2", &r);
	expect_verified(&r, "ccw", 1);
	for (unsigned i = 0; i < 2; i++) {
		char want[64];
		const char *d;

		snprintf(want, sizeof(want), "\"class\":\"ccw\",\"side\":\"source\",\"id\":%u", i);
		d = strstr(r.out, want);
		cr_assert_not_null(d, "%s", r.out);
		json_expect_str(d, "state", "released");
		cr_assert_gt(json_num(d, "bytes"), 0);
	}
}
#endif
