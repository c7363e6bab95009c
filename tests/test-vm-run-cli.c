// SPDX-License-Identifier: MIT
/*
 * `migratectl vm run` as a user runs it: the JSON summary of a short run, and
 * the exit status and message for options that do not parse.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "proc-fixture.h"

const int test_requires_kvm = 1;

Test(vm_run_cli, json_summary_of_a_short_run)
{
	struct run_result r;
	double dirty, wss_pages = (16 << 20) / 4096.0;

	/* 5 s: the fill of 256 MiB takes over 2 s when the host is busy, and
	 * the rate is read from the seconds after it */
	proc_run("vm run --mem 256M --vcpus 2 --wss 16M --seconds 5 --json", &r);
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	/* stdout holds exactly one JSON object */
	cr_assert_eq(r.out[0], '{', "%s", r.out);
	cr_assert_not_null(strstr(r.out, "}\n"));
	cr_assert_eq(strchr(r.out, '\n'), strrchr(r.out, '\n'), "more than one line: %s", r.out);
	cr_assert_eq(json_num(r.out, "vcpus"), 2);
	cr_assert_eq(json_num(r.out, "mem_bytes"), 256 << 20);
	cr_assert_eq(json_num(r.out, "wss_bytes"), 16 << 20);
	cr_assert_not_null(strstr(r.out, "\"dirty_log\":\"bitmap-manual\""), "%s", r.out);
	cr_assert_eq(json_num(r.out, "selfcheck_errors"), 0);
	cr_assert_gt(json_num(r.out, "passes"), 0);
	/* At full speed the guest rewrites its whole working set many times a
	 * second, so the log sees each working-set page once per sync. */
	cr_assert_not_null(strstr(r.out, "\"steady_state\":true"), "the fill never ended: %s",
			   r.out);
	dirty = json_num(r.out, "dirty_pages_per_s");
	cr_assert(dirty > 0.8 * wss_pages && dirty < 1.2 * wss_pages,
		  "dirty rate %.0f pages/s, working set %.0f pages", dirty, wss_pages);
}

Test(vm_run_cli, rate_limit_shows_in_the_dirty_log)
{
	struct run_result r;
	double dirty;

	/* 2000 pages/s over a 64 MiB working set: every write is to a page not yet
	 * dirty in that interval, so the dirty rate equals the write rate. */
	/* 5 s, as above: the seconds after the fill are the ones measured */
	proc_run("vm run --mem 128M --vcpus 2 --wss 64M --rate 2000 --pattern random --seconds 5 "
		 "--json", &r);
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	cr_assert_not_null(strstr(r.out, "\"steady_state\":true"), "the fill never ended: %s",
			   r.out);
	dirty = json_num(r.out, "dirty_pages_per_s");
	cr_assert(dirty > 1500 && dirty < 2500, "dirty rate %.0f pages/s for a 2000 pages/s guest", dirty);
	cr_assert_eq(json_num(r.out, "selfcheck_errors"), 0);
}

Test(vm_run_cli, ring_mode_progress_lines)
{
	struct run_result r;

	proc_run("vm run --mem 64M --vcpus 1 --wss 4M --dirty-log ring --seconds 2", &r);
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	cr_assert_not_null(strstr(r.out, "dirty log ring"), "%s", r.out);
	/* a line a second, each saying when (a loaded host prints 2.1s for 2.0s) */
	{
		unsigned lines = 0;

		for (const char *p = strstr(r.out, "passes "); p; p = strstr(p + 1, "passes "))
			lines++;
		cr_assert_geq(lines, 2, "not a line a second: %s", r.out);
	}
	cr_assert_not_null(strstr(r.out, "pages/s"), "%s", r.out);
}

Test(vm_run_cli, bad_options_exit_2)
{
	proc_expect_usage("vm run --vcpus 0", "--vcpus");
	proc_expect_usage("vm run --mem 1X", "--mem");
	proc_expect_usage("vm run --mem 1.5G", "--mem");
	proc_expect_usage("vm run --mem 64M --wss 128M", "wss");
	proc_expect_usage("vm run --pattern zigzag", "--pattern");
	proc_expect_usage("vm run --rate -5", "--rate");
	proc_expect_usage("vm run --dirty-log pml", "--dirty-log");
	proc_expect_usage("vm run --seconds soon", "--seconds");
	proc_expect_usage("vm run --frobnicate", "frobnicate");
	proc_expect_usage("vm run extra", "extra");
	proc_expect_usage("vm fly", "fly");
	proc_expect_usage("", "usage");
}
