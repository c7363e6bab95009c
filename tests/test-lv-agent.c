// SPDX-License-Identifier: MIT
/*
 * libvirt domains at the agents' door, without libvirt: what an agent
 * without --libvirt, and the CLI, refuse, and that a source agent makes no
 * directory but its own.  The migrations themselves run against real
 * libvirtds in tests/libvirt/test-libvirt.sh.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <migrate/agent.h>
#include <migrate/control.h>
#include <migrate/policy.h>
#include <migrate/wire-order.h>

#include "proc-fixture.h"
#include "util.h"

static int call(const char *ep, uint32_t op, const void *body, size_t len, struct mig_error *err)
{
	struct mig_client c;
	struct mig_buf extra = { 0 };
	int r;

	cr_assert_eq(mig_client_open(ep, NULL, &c, err), 0, "%s", err->msg);
	r = mig_client_call(&c, op, body, len, &extra, err);
	mig_buf_free(&extra);
	mig_client_close(&c);
	return r;
}

/* An agent without --libvirt says so, for each operation. */
Test(lv_agent, without_libvirt_each_operation_says_so)
{
	struct proc_pair t;
	struct mig_error err = { 0 };
	struct mig_lv_domain_ref ref = { .domain = "web1" };
	struct mig_lv_incoming in = { .domain = "web1" };

	proc_pair_up(&t, NULL, NULL);
	cr_assert_eq(call(t.src, MIG_OP_LV_DOMAIN, &ref, sizeof(ref), &err), -ENOTCONN);
	cr_assert_not_null(strstr(err.msg, "serves no libvirt host"), "%s", err.msg);
	mig_error_clear(&err);
	mig_wire_le(&mig_wl_lv_incoming, &in, 1);
	cr_assert_eq(call(t.dst, MIG_OP_LV_INCOMING, &in, sizeof(in), &err), -ENOTCONN);
	cr_assert_not_null(strstr(err.msg, "--libvirt URI"), "%s", err.msg);
	proc_pair_down(&t);
}

/* Names libvirt and the agents do not share are refused before anything. */
Test(lv_agent, bad_domain_names)
{
	struct proc_pair t;
	struct mig_error err = { 0 };
	struct mig_lv_domain_ref ref;

	proc_pair_up(&t, NULL, NULL);
	memset(&ref, 'a', sizeof(ref));     /* no NUL */
	cr_assert_eq(call(t.src, MIG_OP_LV_DOMAIN, &ref, sizeof(ref), &err), -EINVAL);
	mig_error_clear(&err);
	memset(&ref, 0, sizeof(ref));
	strcpy(ref.domain, "../etc");
	cr_assert_eq(call(t.src, MIG_OP_LV_DOMAIN, &ref, sizeof(ref), &err), -EINVAL);
	cr_assert_not_null(strstr(err.msg, "bad domain name"), "%s", err.msg);
	proc_pair_down(&t);
}

/* The run directory travels from the destination: a source makes only the
 * one it would have chosen itself, never a path a client names. */
Test(lv_agent, source_makes_no_directory_a_client_names)
{
	struct proc_pair t;
	struct mig_error err = { 0 };
	struct mig_lv_outgoing out = { .domain = "web1", .parallel = 1,
				       .timeout_action = CONV_TIMEOUT_ABORT };
	char dir[128];
	struct stat st;

	proc_pair_up(&t, NULL, NULL);
	snprintf(dir, sizeof(dir), "%s/elsewhere", t.dir);
	str_copy(out.run_dir, sizeof(out.run_dir), dir);
	str_copy(out.dest_addr, sizeof(out.dest_addr), "127.0.0.1:9");
	mig_wire_le(&mig_wl_lv_outgoing, &out, 1);
	cr_assert_eq(call(t.src, MIG_OP_LV_OUTGOING, &out, sizeof(out), &err), -EINVAL);
	cr_assert_not_null(strstr(err.msg, "same --libvirt-run-dir"), "%s", err.msg);
	cr_assert_eq(stat(dir, &st), -1, "the agent made %s", dir);
	proc_pair_down(&t);
}

/* A convergence the agent does not know is refused before anything. */
Test(lv_agent, source_refuses_an_unknown_convergence)
{
	struct proc_pair t;
	struct mig_error err = { 0 };
	struct mig_lv_outgoing out = { .domain = "web1", .parallel = 1,
				       .timeout_action = CONV_TIMEOUT_ABORT,
				       .converge = _CONV_MODE_MAX };

	proc_pair_up(&t, NULL, NULL);
	str_copy(out.dest_addr, sizeof(out.dest_addr), "127.0.0.1:9");
	mig_wire_le(&mig_wl_lv_outgoing, &out, 1);
	cr_assert_eq(call(t.src, MIG_OP_LV_OUTGOING, &out, sizeof(out), &err), -EINVAL);
	cr_assert_not_null(strstr(err.msg, "convergence"), "%s", err.msg);
	mig_error_clear(&err);
	out = (struct mig_lv_outgoing){ .domain = "web1", .parallel = 1,
					.timeout_action = CONV_TIMEOUT_ABORT,
					.converge = CONV_MODE_POSTCOPY, .flags = MIG_LV_F_POSTCOPY,
					.postcopy_after = 65 };
	mig_wire_le(&mig_wl_lv_outgoing, &out, 1);
	cr_assert_eq(call(t.src, MIG_OP_LV_OUTGOING, &out, sizeof(out), &err), -EINVAL);
	cr_assert_not_null(strstr(err.msg, "convergence"), "%s", err.msg);
	proc_pair_down(&t);
}

/* The CLI: options that shape migratectl's own stream are refused for a
 * libvirt domain, --copy-storage without one, and agents without
 * --libvirt make a configuration error (exit 2, nothing started). */
Test(lv_agent, cli_refusals)
{
	struct proc_pair t;
	struct run_result r;
	char args[512];

	proc_expect_usage("start local local --vm libvirt:web1 --compress zstd",
			  "--compress does not apply to a libvirt domain");
	proc_expect_usage("start local local --vm libvirt:web1 --no-verify",
			  "--no-verify does not apply");
	proc_expect_usage("start local local --copy-storage", "--copy-storage applies to libvirt "
			  "domains only");
	/* convergence: what libvirt 9.0 cannot be asked for, and what
	 * migratectl does not do for a libvirt domain */
	proc_expect_usage("start local local --vm libvirt:web1 --converge auto --max-throttle 50",
			  "--max-throttle does not apply to a libvirt domain: libvirt 9.0 passes no "
			  "bound");
	proc_expect_usage("start local local --vm libvirt:web1 --stall 10s",
			  "--stall does not apply to a libvirt domain");
	proc_expect_usage("start local local --vm libvirt:web1 --stall-action abort",
			  "--stall-action does not apply to a libvirt domain");
	proc_expect_usage("start local local --vm libvirt:web1 --converge postcopy "
			  "--recover-window 30s", "--recover-window does not apply to a libvirt "
			  "domain");
	proc_expect_usage("start local local --vm libvirt:web1 --postcopy-after 2",
			  "--postcopy-after applies to --converge postcopy only");
	proc_expect_usage("agent --listen unix:///tmp/x.sock --libvirt-run-dir run",
			  "must be an absolute path");
	proc_pair_up(&t, NULL, NULL);
	snprintf(args, sizeof(args), "start %s %s --vm libvirt:web1 --json", t.src, t.dst);
	proc_run(args, &r);
	cr_assert_eq(r.status, 2, "exit %d: %s", r.status, r.err);
	cr_assert_not_null(strstr(r.err, "serves no libvirt host"), "%s", r.err);
	json_expect_str(r.out, "owner", "source");
	/* libvirt's own default: no convergence unless asked for */
	json_expect_str(r.out, "mode_requested", "none");
	/* accepted for a libvirt domain, and said in the summary */
	snprintf(args, sizeof(args), "start %s %s --vm libvirt:web1 --converge postcopy "
		 "--postcopy-after 2 --json", t.src, t.dst);
	proc_run(args, &r);
	cr_assert_eq(r.status, 2, "exit %d: %s", r.status, r.err);
	cr_assert_not_null(strstr(r.err, "serves no libvirt host"), "%s", r.err);
	json_expect_str(r.out, "mode_requested", "postcopy");
	snprintf(args, sizeof(args), "start %s %s --vm libvirt:web1 --converge throttle --json",
		 t.src, t.dst);
	proc_run(args, &r);
	cr_assert_eq(r.status, 2, "exit %d: %s", r.status, r.err);
	json_expect_str(r.out, "mode_requested", "throttle");
	proc_pair_down(&t);
}
