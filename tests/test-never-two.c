// SPDX-License-Identifier: MIT
/*
 * The never-two check (chaos/never-two.c) on hand-made journals, and the
 * journal's line format (chaos/journal-line.c).  No KVM: pure.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include <stdio.h>

#include <migrate/control.h>
#include <migrate/journal.h>
#include <migrate/vm.h>

#define START MIG_VCPU_RUN_START
#define STOP MIG_VCPU_RUN_STOP

static uint64_t next_seq;

/* One record; realtime and monotonic differ by a fixed offset, so a check
 * on the wrong clock would not find the same times. */
static struct mig_journal_rec rec(const char *vm, uint32_t vcpu, uint32_t event, uint64_t t)
{
	struct mig_journal_rec r = { .vcpu = vcpu, .event = event, .realtime_ns = t,
				     .monotonic_ns = t + 1000000, .seq = ++next_seq };

	strncpy(r.vm, vm, sizeof(r.vm) - 1);
	return r;
}

#define SRC(name, arr) { name, arr, sizeof(arr) / sizeof((arr)[0]) }

static int check(const struct mig_journal_src *s, unsigned n, struct mig_overlap *out,
		 size_t max, size_t *found)
{
	struct mig_error err = { 0 };
	int r = mig_never_two(s, n, MIG_JOURNAL_REALTIME, out, max, found, &err);

	cr_assert_geq(r, 0, "%s", err.msg);
	return r;
}

/* The source stops at 200, the destination starts at 300. */
Test(never_two, handover_with_a_gap_is_not_an_overlap)
{
	struct mig_journal_rec a[] = {
		rec("vm", 0, START, 100), rec("vm", 1, START, 110),
		rec("vm", 0, STOP, 190), rec("vm", 1, STOP, 200),
	};
	struct mig_journal_rec b[] = { rec("vm", 0, START, 300), rec("vm", 1, START, 301) };
	struct mig_journal_src s[] = { SRC("src", a), SRC("dst", b) };
	struct mig_overlap o[4];
	size_t n = 99;

	cr_assert_eq(check(s, 2, o, 4, &n), 0);
	cr_assert_eq(n, 0);
}

/* A stop at t and a start at t share no nanosecond: "by any amount" is
 * start < stop, so equal times are not an overlap. */
Test(never_two, touching_intervals_are_not_an_overlap)
{
	struct mig_journal_rec a[] = { rec("vm", 0, START, 100), rec("vm", 0, STOP, 200) };
	struct mig_journal_rec b[] = { rec("vm", 0, START, 200), rec("vm", 0, STOP, 400) };
	struct mig_journal_src s[] = { SRC("src", a), SRC("dst", b) };
	size_t n = 99;

	cr_assert_eq(check(s, 2, NULL, 0, &n), 0);
	cr_assert_eq(n, 0);
}

/* One nanosecond shared is one too many: the report says how long, which
 * agents and which records bound each copy's run. */
Test(never_two, overlap_is_reported_with_its_bounds)
{
	struct mig_journal_rec a[] = {
		rec("vm", 0, START, 100), rec("vm", 1, START, 120),
		rec("vm", 0, STOP, 150), rec("vm", 1, STOP, 201),
	};
	struct mig_journal_rec b[] = { rec("vm", 1, START, 200), rec("vm", 1, STOP, 500) };
	struct mig_journal_src s[] = { SRC("src", a), SRC("dst", b) };
	struct mig_overlap o[4];
	size_t n = 0;

	cr_assert_eq(check(s, 2, o, 4, &n), 1);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(o[0].vm, "vm");
	cr_assert_eq(o[0].a, 0);
	cr_assert_eq(o[0].b, 1);
	cr_assert_eq(o[0].from_ns, 200);
	cr_assert_eq(o[0].to_ns, 201);
	cr_assert_eq(o[0].overlap_ns, 1);
	/* the source's run began with vCPU 0 and ended with vCPU 1's stop */
	cr_assert_eq(o[0].a_start.vcpu, 0);
	cr_assert_eq(o[0].a_start.realtime_ns, 100);
	cr_assert_eq(o[0].a_stop.vcpu, 1);
	cr_assert_eq(o[0].a_stop.realtime_ns, 201);
	cr_assert_eq(o[0].b_start.realtime_ns, 200);
	cr_assert_eq(o[0].b_stop.realtime_ns, 500);
}

/* A copy that never stopped runs past every record: a start on the other
 * agent after it is an overlap that lasts as long as that run. */
Test(never_two, a_copy_that_never_stopped_is_open)
{
	struct mig_journal_rec a[] = { rec("vm", 0, START, 100) };
	struct mig_journal_rec b[] = { rec("vm", 0, START, 300), rec("vm", 0, STOP, 350) };
	struct mig_journal_rec c[] = { rec("vm", 0, START, 400) };
	struct mig_journal_src s[] = { SRC("src", a), SRC("dst", b), SRC("third", c) };
	struct mig_overlap o[4];
	size_t n = 0;

	cr_assert_eq(check(s, 3, o, 4, &n), 1);
	cr_assert_eq(n, 2);
	/* src (open) with dst: 300..350 */
	cr_assert_eq(o[0].a, 0);
	cr_assert_eq(o[0].b, 1);
	cr_assert_eq(o[0].overlap_ns, 50);
	cr_assert_eq(o[0].a_stop.seq, 0, "an open run has no stop record");
	/* src (open) with third (open): from 400 on, without end */
	cr_assert_eq(o[1].a, 0);
	cr_assert_eq(o[1].b, 2);
	cr_assert_eq(o[1].from_ns, 400);
	cr_assert_eq(o[1].to_ns, UINT64_MAX);
	cr_assert_eq(o[1].overlap_ns, UINT64_MAX);
}

/* Records come in any order (merged files, a ring read in pieces): each
 * agent's are put in time order first. */
Test(never_two, records_out_of_order)
{
	struct mig_journal_rec a[] = {
		rec("vm", 1, STOP, 200), rec("vm", 0, START, 100),
		rec("vm", 0, STOP, 150), rec("vm", 1, START, 120),
	};
	struct mig_journal_rec b[] = { rec("vm", 0, STOP, 400), rec("vm", 0, START, 190) };
	struct mig_journal_src s[] = { SRC("src", a), SRC("dst", b) };
	struct mig_overlap o[2];
	size_t n = 0;

	cr_assert_eq(check(s, 2, o, 2, &n), 1);
	cr_assert_eq(n, 1);
	cr_assert_eq(o[0].from_ns, 190);
	cr_assert_eq(o[0].to_ns, 200);
	/* in time order the same journals hand over cleanly */
	b[1].realtime_ns = 200;
	cr_assert_eq(check(s, 2, o, 2, &n), 0);
}

/* Copies of two different VMs may run at once; one VM on both sides may not. */
Test(never_two, two_vms_are_judged_apart)
{
	struct mig_journal_rec a[] = {
		rec("one", 0, START, 100), rec("two", 0, START, 100),
		rec("one", 0, STOP, 200),
	};
	struct mig_journal_rec b[] = {
		rec("one", 0, START, 250), rec("two", 0, START, 150),
	};
	struct mig_journal_src s[] = { SRC("src", a), SRC("dst", b) };
	struct mig_overlap o[4];
	size_t n = 0;

	cr_assert_eq(check(s, 2, o, 4, &n), 1);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(o[0].vm, "two");
	cr_assert_eq(o[0].from_ns, 150);
	cr_assert_eq(o[0].to_ns, UINT64_MAX);
}

/* Runs on one agent never count against each other (a pause and resume),
 * and a second start or a stray stop changes nothing. */
Test(never_two, one_agent_alone_never_overlaps)
{
	struct mig_journal_rec a[] = {
		rec("vm", 0, START, 100), rec("vm", 0, START, 110), rec("vm", 0, STOP, 200),
		rec("vm", 0, STOP, 210), rec("vm", 0, START, 300), rec("vm", 1, STOP, 305),
	};
	struct mig_journal_rec b[] = { rec("vm", 0, START, 205), rec("vm", 0, STOP, 299) };
	struct mig_journal_src s[] = { SRC("src", a), SRC("dst", b) };
	struct mig_overlap o[2];
	size_t n = 0;

	/* the second start did not extend the run: it ended at the first stop */
	cr_assert_eq(check(s, 2, o, 2, &n), 0);
	cr_assert_eq(check(s, 1, o, 2, &n), 0);
}

/* The count is of all overlaps, even past max. */
Test(never_two, more_overlaps_than_room)
{
	struct mig_journal_rec a[] = { rec("vm", 0, START, 0) };
	struct mig_journal_rec b[] = {
		rec("vm", 0, START, 10), rec("vm", 0, STOP, 20),
		rec("vm", 0, START, 30), rec("vm", 0, STOP, 40),
		rec("vm", 0, START, 50), rec("vm", 0, STOP, 60),
	};
	struct mig_journal_src s[] = { SRC("src", a), SRC("dst", b) };
	struct mig_overlap o[1];
	size_t n = 0;

	cr_assert_eq(check(s, 2, o, 1, &n), 1);
	cr_assert_eq(n, 3);
}

/* The monotonic clock is chosen on request: the same journals, shifted on
 * one clock only. */
Test(never_two, the_chosen_clock_decides)
{
	struct mig_journal_rec a[] = { rec("vm", 0, START, 100), rec("vm", 0, STOP, 200) };
	struct mig_journal_rec b[] = { rec("vm", 0, START, 300), rec("vm", 0, STOP, 400) };
	struct mig_journal_src s[] = { SRC("src", a), SRC("dst", b) };
	struct mig_error err = { 0 };
	size_t n = 0;

	b[0].monotonic_ns = a[1].monotonic_ns - 1;
	cr_assert_eq(mig_never_two(s, 2, MIG_JOURNAL_REALTIME, NULL, 0, &n, &err), 0);
	cr_assert_eq(mig_never_two(s, 2, MIG_JOURNAL_MONOTONIC, NULL, 0, &n, &err), 1);
	cr_assert_eq(n, 1);
}

/* Hook records (a libvirt domain's, vcpu 0) are no vCPU running: a hook
 * record on another agent in the middle of a run, or a pair of them that
 * would look like a start and a stop, is no overlap, and a real overlap
 * between them is still found. */
Test(never_two, hook_records_are_ignored)
{
	struct mig_journal_rec a[] = {
		rec("vm", 0, START, 100), rec("vm", 0, STOP, 200),
		rec("5f0c6a1e-3b9d-4c7e-9a41-0123456789ab", 0, MIG_JOURNAL_HOOK, 100),
	};
	struct mig_journal_rec b[] = {
		rec("vm", 0, MIG_JOURNAL_HOOK, 150), rec("vm", 0, MIG_JOURNAL_HOOK, 160),
		rec("5f0c6a1e-3b9d-4c7e-9a41-0123456789ab", 0, MIG_JOURNAL_HOOK, 120),
		rec("vm", 0, START, 300),
	};
	struct mig_journal_src s[] = { SRC("src", a), SRC("dst", b) };
	struct mig_overlap o[4];
	size_t n = 99;

	b[0].detail = MIG_HOOK_STARTED;
	b[1].detail = MIG_HOOK_STOPPED;
	cr_assert_eq(check(s, 2, o, 4, &n), 0);
	cr_assert_eq(n, 0);
	/* the same journals with a real overlap: it is found, hooks or not */
	b[3].realtime_ns = 150;
	cr_assert_eq(check(s, 2, o, 4, &n), 1);
	cr_assert_eq(n, 1);
	cr_assert_eq(o[0].from_ns, 150);
	cr_assert_eq(o[0].to_ns, 200);
}

/* ---- the line format ---- */

Test(journal_line, round_trip)
{
	struct mig_journal_rec r = rec("vm-1.a_b", 7, STOP, 1796553888967674224ULL), back;
	struct mig_error err = { 0 };
	char line[MIG_JOURNAL_LINE_MAX];
	int n;

	r.pid = 4242;
	for (unsigned i = 0; i < 16; i++)
		r.mig_id[i] = (uint8_t)(0xa0 + i);
	n = mig_journal_rec_format(&r, line, sizeof(line));
	cr_assert_eq((size_t)n, strlen(line));
	cr_assert(strstr(line, "\"mig\":\"a0a1a2a3-a4a5-a6a7-a8a9-aaabacadaeaf\""), "%s", line);
	cr_assert(strstr(line, "\"event\":\"stop\""), "%s", line);
	cr_assert_eq(mig_journal_rec_parse(line, &back, &err), 0, "%s", err.msg);
	cr_assert_eq(memcmp(&r, &back, sizeof(r)), 0, "%s", line);
	/* no migration: null, and back to zero */
	memset(r.mig_id, 0, 16);
	r.event = START;
	mig_journal_rec_format(&r, line, sizeof(line));
	cr_assert(strstr(line, "\"mig\":null"), "%s", line);
	cr_assert_eq(mig_journal_rec_parse(line, &back, &err), 0, "%s", err.msg);
	cr_assert_eq(memcmp(&r, &back, sizeof(r)), 0, "%s", line);
}

/* A hook record: "event":"hook" and its operation by name, back to the
 * same record; every operation of the table. */
Test(journal_line, hook_round_trip)
{
	struct mig_journal_rec r = rec("5f0c6a1e-3b9d-4c7e-9a41-0123456789ab", 0,
				       MIG_JOURNAL_HOOK, 1796553888967674224ULL), back;
	char line[MIG_JOURNAL_LINE_MAX], want[64];

	r.pid = 77;
	for (int op = 1; op < _MIG_HOOK_OP_END; op++) {
		struct mig_error err = { 0 };

		r.detail = (uint32_t)op;
		cr_assert_eq((size_t)mig_journal_rec_format(&r, line, sizeof(line)), strlen(line));
		snprintf(want, sizeof(want), "\"event\":\"hook\",\"hook\":\"%s\"",
			 mig_hook_op_to_string(op));
		cr_assert(strstr(line, want), "%s", line);
		cr_assert_eq(mig_journal_rec_parse(line, &back, &err), 0, "%s", err.msg);
		cr_assert_eq(memcmp(&r, &back, sizeof(r)), 0, "%s", line);
	}
	cr_assert_str_eq(mig_hook_op_to_string(MIG_HOOK_STARTED), "started");
	cr_assert_eq(mig_hook_op_from_string("reconnect"), MIG_HOOK_RECONNECT);
	cr_assert_null(mig_hook_op_to_string(0));
	cr_assert_null(mig_hook_op_to_string(_MIG_HOOK_OP_END));
	cr_assert_lt(mig_hook_op_from_string("attach"), 0);
}

/* A vCPU record's line has no "hook"; a hook line without one, or with an
 * unknown operation, is refused. */
Test(journal_line, bad_hook_lines_are_refused)
{
	struct mig_journal_rec r = rec("vm", 0, START, 5);
	struct mig_error err = { 0 };
	char line[MIG_JOURNAL_LINE_MAX];

	mig_journal_rec_format(&r, line, sizeof(line));
	cr_assert_null(strstr(line, "hook"), "%s", line);
	cr_assert_lt(mig_journal_rec_parse("{\"seq\":1,\"vm\":\"v\",\"mig\":null,\"vcpu\":0,"
					   "\"event\":\"hook\",\"realtime_ns\":5,"
					   "\"monotonic_ns\":5,\"pid\":1}", &r, &err), 0);
	cr_assert(strstr(err.msg, "\"hook\""), "%s", err.msg);
	mig_error_clear(&err);
	cr_assert_lt(mig_journal_rec_parse("{\"seq\":1,\"vm\":\"v\",\"mig\":null,\"vcpu\":0,"
					   "\"event\":\"hook\",\"hook\":\"attach\",\"realtime_ns\":5,"
					   "\"monotonic_ns\":5,\"pid\":1}", &r, &err), 0);
	cr_assert(strstr(err.msg, "hook operation"), "%s", err.msg);
}

/* A line cut short by a kill, or damaged, is refused with what is wrong. */
Test(journal_line, bad_lines_are_refused)
{
	static const struct {
		const char *line, *says;
	} bad[] = {
		{ "{\"seq\":1,\"vm\":\"v\",\"mig\":null,\"vcpu\":0,\"ev", "not one JSON object" },
		{ "{\"seq\":1,\"vm\":\"v\",\"mig\":null,\"vcpu\":0,\"event\":\"start\","
		  "\"realtime_ns\":5,\"pid\":1}", "\"monotonic_ns\"" },
		{ "{\"seq\":1,\"vm\":\"v\",\"mig\":null,\"vcpu\":-1,\"event\":\"start\","
		  "\"realtime_ns\":5,\"monotonic_ns\":5,\"pid\":1}", "\"vcpu\"" },
		{ "{\"seq\":1,\"vm\":\"a b\",\"mig\":null,\"vcpu\":0,\"event\":\"start\","
		  "\"realtime_ns\":5,\"monotonic_ns\":5,\"pid\":1}", "VM name" },
		{ "{\"seq\":1,\"vm\":\"v\",\"mig\":\"xyz\",\"vcpu\":0,\"event\":\"start\","
		  "\"realtime_ns\":5,\"monotonic_ns\":5,\"pid\":1}", "UUID" },
		{ "{\"seq\":1,\"vm\":\"v\",\"mig\":null,\"vcpu\":0,\"event\":\"pause\","
		  "\"realtime_ns\":5,\"monotonic_ns\":5,\"pid\":1}", "\"event\"" },
	};
	struct mig_journal_rec r;

	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct mig_error err = { 0 };

		cr_assert_lt(mig_journal_rec_parse(bad[i].line, &r, &err), 0, "%s", bad[i].line);
		cr_assert(strstr(err.msg, bad[i].says), "%s: %s", bad[i].line, err.msg);
	}
}

/* ---- the agent's journal (agent/journal.c), fed by a VM's run events ---- */

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../agent/journal.h"

static void emit(struct mig_vm *vm, uint32_t vcpu, uint32_t kind, uint64_t t)
{
	struct mig_vcpu_run e = { .vcpu = vcpu, .kind = kind, .realtime_ns = t,
				  .monotonic_ns = t + 5 };

	mig_vm_run_event(vm, &e);
}

/* Events before the watcher are kept and come first, in order, with their
 * own times; a re-tag names the migration from then on; the file gets
 * every record as a line. */
Test(agent_journal, events_before_the_watcher_and_a_retag)
{
	static struct mig_vm vm;
	static struct mig_journal_rec out[8];
	struct agent_journal *j;
	struct mig_journal_reply info;
	struct mig_error err = { 0 };
	char path[] = "/tmp/migratectl-journal-XXXXXX", line[MIG_JOURNAL_LINE_MAX + 2];
	const uint8_t id[16] = { 1, 2, 3 };
	int fd = mkstemp(path);
	FILE *f;

	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(agent_journal_open(path, 4, &j, &err), 0, "%s", err.msg);
	emit(&vm, 1, START, 10);
	emit(&vm, 0, START, 11);
	cr_assert_eq(agent_journal_read(j, 0, 0, out, 8, &info), 0, "nothing before the watch");
	cr_assert_eq(agent_journal_watch(j, &vm, "early", NULL), 0);
	cr_assert_eq(agent_journal_watch(j, &vm, "early", id), 0);
	emit(&vm, 0, STOP, 20);
	cr_assert_eq(agent_journal_read(j, 0, 0, out, 8, &info), 3);
	cr_assert_eq(info.next_seq, 4);
	cr_assert_eq(out[0].vcpu, 1);
	cr_assert_eq(out[0].realtime_ns, 10, "its own time, not the watch's");
	cr_assert_eq(out[0].monotonic_ns, 15);
	cr_assert_eq(out[1].seq, 2);
	cr_assert_str_eq(out[2].vm, "early");
	cr_assert_eq(out[0].mig_id[0], 0, "made before the migration");
	cr_assert_eq(memcmp(out[2].mig_id, id, 16), 0, "the re-tag names the migration");
	cr_assert_eq(out[2].pid, (uint32_t)getpid());
	/* --since and after_seq */
	cr_assert_eq(agent_journal_read(j, 11, 0, out, 8, &info), 2);
	cr_assert_eq(out[0].realtime_ns, 11);
	cr_assert_eq(agent_journal_read(j, 0, 2, out, 8, &info), 1);
	cr_assert_eq(out[0].seq, 3);
	/* the file, a line each */
	f = fopen(path, "r");
	cr_assert_not_null(f);
	for (unsigned i = 0; i < 3; i++) {
		struct mig_journal_rec r;

		cr_assert_not_null(fgets(line, sizeof(line), f));
		cr_assert_eq(mig_journal_rec_parse(line, &r, &err), 0, "%s", err.msg);
		cr_assert_eq(r.seq, i + 1);
	}
	cr_assert_null(fgets(line, sizeof(line), f));
	fclose(f);
	unlink(path);
	/* the VM ends: its watcher's tag goes, and no later event is recorded */
	mig_vm_run_end(&vm);
	emit(&vm, 1, STOP, 30);
	cr_assert_eq(agent_journal_read(j, 0, 0, out, 8, &info), 3);
}

/* A full ring drops its oldest records and says how many. */
Test(agent_journal, the_ring_drops_the_oldest)
{
	static struct mig_vm vm;
	static struct mig_journal_rec out[8];
	struct agent_journal *j;
	struct mig_journal_reply info;
	struct mig_error err = { 0 };

	cr_assert_eq(agent_journal_open(NULL, 4, &j, &err), 0, "%s", err.msg);
	agent_journal_watch(j, &vm, "ring", NULL);
	for (unsigned i = 0; i < 6; i++)
		emit(&vm, 0, i % 2 ? STOP : START, 100 + i);
	cr_assert_eq(agent_journal_read(j, 0, 0, out, 8, &info), 4);
	cr_assert_eq(info.dropped, 2);
	cr_assert_eq(info.capacity, 4);
	cr_assert_eq(out[0].seq, 3);
	cr_assert_eq(out[3].seq, 6);
	cr_assert_eq(out[3].realtime_ns, 105);
	/* max caps a reply; after_seq pages on */
	cr_assert_eq(agent_journal_read(j, 0, 0, out, 3, &info), 3);
	cr_assert_eq(agent_journal_read(j, 0, out[2].seq, out, 3, &info), 1);
	cr_assert_eq(out[0].seq, 6);
	mig_vm_run_end(&vm);
}

/* A hook call's record: the domain's UUID, the hook's operation, in the
 * ring and the file, between vCPU records in seq order. */
Test(agent_journal, a_hook_record)
{
	static struct mig_journal_rec out[4];
	struct agent_journal *j;
	struct mig_journal_reply info;
	struct mig_error err = { 0 };
	char path[] = "/tmp/migratectl-journal-XXXXXX", line[MIG_JOURNAL_LINE_MAX + 2];
	const char *uuid = "5f0c6a1e-3b9d-4c7e-9a41-0123456789ab";
	int fd = mkstemp(path);
	FILE *f;

	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(agent_journal_open(path, 4, &j, &err), 0, "%s", err.msg);
	cr_assert_eq(agent_journal_hook(j, uuid, MIG_HOOK_PREPARE), 1);
	cr_assert_eq(agent_journal_hook(j, uuid, MIG_HOOK_STARTED), 2);
	cr_assert_eq(agent_journal_read(j, 0, 0, out, 4, &info), 2);
	cr_assert_str_eq(out[1].vm, uuid);
	cr_assert_eq(out[1].event, MIG_JOURNAL_HOOK);
	cr_assert_eq(out[1].detail, MIG_HOOK_STARTED);
	cr_assert_eq(out[1].pid, (uint32_t)getpid());
	cr_assert_gt(out[1].realtime_ns, 0);
	f = fopen(path, "r");
	cr_assert_not_null(f);
	cr_assert_not_null(fgets(line, sizeof(line), f));
	cr_assert(strstr(line, "\"event\":\"hook\",\"hook\":\"prepare\""), "%s", line);
	cr_assert(strstr(line, uuid), "%s", line);
	fclose(f);
	unlink(path);
}

Test(agent_journal, a_file_it_cannot_open_is_an_error)
{
	struct agent_journal *j;
	struct mig_error err = { 0 };

	cr_assert_lt(agent_journal_open("/nonexistent-dir/j", 4, &j, &err), 0);
	cr_assert(strstr(err.msg, "/nonexistent-dir/j") && strstr(err.msg, "--journal"), "%s",
		  err.msg);
}

/* A journal file: every line back, a last line cut short by a kill left
 * out and counted, a damaged line in the middle an error that names it. */
Test(journal_line, a_file_with_a_torn_last_line)
{
	struct mig_journal_rec a = rec("f", 0, START, 5), b = rec("f", 0, STOP, 9);
	char path[] = "/tmp/migratectl-journal-XXXXXX", la[MIG_JOURNAL_LINE_MAX];
	char lb[MIG_JOURNAL_LINE_MAX];
	struct mig_error err = { 0 };
	struct mig_buf recs = { 0 };
	unsigned torn = 0;
	int fd = mkstemp(path);
	FILE *f;

	cr_assert_geq(fd, 0);
	close(fd);
	mig_journal_rec_format(&a, la, sizeof(la));
	mig_journal_rec_format(&b, lb, sizeof(lb));
	f = fopen(path, "w");
	fprintf(f, "%s\n%s\n%.40s", la, lb, la);
	fclose(f);
	cr_assert_eq(mig_journal_file_load(path, &recs, &torn, &err), 0, "%s", err.msg);
	cr_assert_eq(recs.len, 2 * sizeof(a));
	cr_assert_eq(torn, 1);
	cr_assert_eq(memcmp(recs.data + sizeof(a), &b, sizeof(b)), 0);
	recs.len = 0;
	f = fopen(path, "w");
	fprintf(f, "%s\n%.40s\n%s\n", la, la, lb);
	fclose(f);
	cr_assert_lt(mig_journal_file_load(path, &recs, &torn, &err), 0);
	cr_assert(strstr(err.msg, path) && strstr(err.msg, "line 2"), "%s", err.msg);
	unlink(path);
	err = (struct mig_error){ 0 };
	cr_assert_lt(mig_journal_file_load(path, &recs, &torn, &err), 0);
	cr_assert(strstr(err.msg, "cannot read the journal"), "%s", err.msg);
	mig_buf_free(&recs);
}

/* A restarted agent's journal: the earlier file's records that the filter
 * keeps (a libvirt agent's: domains, named by UUID), the newest the ring
 * holds, with their own times and pid and new seqs; what the last of them
 * says of each; and the names it holds. */
static bool uuid_named(const struct mig_journal_rec *r)
{
	return strlen(r->vm) == 36 && r->vm[8] == '-';
}

Test(agent_journal, a_restart_takes_back_what_outlives_it)
{
	static const char *const a = "5f0c6a1e-3b9d-4c7e-9a41-0123456789ab",
			  *const b = "8f1f017f-3b62-4d50-8d91-efbc4ddfd992";
	static const struct { const char *vm; uint32_t event; } before[] = {
		{ a, START }, { "labvm", START }, { b, START }, { a, STOP }, { b, STOP },
		{ b, START }, { "labvm", STOP },
	};
	static struct mig_journal_rec out[8];
	static struct mig_buf names;
	struct agent_journal *j;
	struct mig_journal_reply info;
	struct mig_error err = { 0 };
	char path[] = "/tmp/migratectl-journal-XXXXXX", line[MIG_JOURNAL_LINE_MAX + 2];
	int fd = mkstemp(path);
	FILE *f;

	cr_assert_geq(fd, 0);
	close(fd);
	f = fopen(path, "w");
	for (unsigned i = 0; i < sizeof(before) / sizeof(before[0]); i++) {
		struct mig_journal_rec r = { .seq = i + 1, .realtime_ns = 1000 + i,
					     .monotonic_ns = 50 + i, .event = before[i].event,
					     .pid = 4242 };

		snprintf(r.vm, sizeof(r.vm), "%s", before[i].vm);
		mig_journal_rec_format(&r, line, sizeof(line));
		fprintf(f, "%s\n", line);
	}
	fclose(f);
	/* a ring of 4: the 5 domain records do not all fit */
	cr_assert_eq(agent_journal_open(path, 4, &j, &err), 0, "%s", err.msg);
	cr_assert_eq(agent_journal_preload(j, path, uuid_named, &err), 0, "%s", err.msg);
	cr_assert_eq(agent_journal_read(j, 0, 0, out, 8, &info), 4);
	cr_assert_eq(info.dropped, 0, "only what fits was taken");
	cr_assert_str_eq(out[0].vm, b, "the newest 4 domain records, oldest first");
	cr_assert_eq(out[0].realtime_ns, 1002, "its own time");
	cr_assert_eq(out[3].realtime_ns, 1005);
	cr_assert_eq(out[0].seq, 1, "new seqs");
	cr_assert_eq(out[3].seq, 4);
	cr_assert_eq(out[2].pid, 4242, "the pid of the agent that made it");
	cr_assert_eq(agent_journal_running(j, a), 0, "a's last record is its stop");
	cr_assert_eq(agent_journal_running(j, b), 1, "b's last record is its start");
	cr_assert_eq(agent_journal_running(j, "labvm"), -1, "a lab VM dies with its agent");
	cr_assert_eq(agent_journal_uuids(j, uuid_named, &names), 0);
	cr_assert_eq(names.len, 2 * MIG_NAME_MAX);
	cr_assert_str_eq((const char *)names.data, b);
	cr_assert_str_eq((const char *)names.data + MIG_NAME_MAX, a);
	/* what this agent journals follows, and the file is not written twice */
	agent_journal_hook(j, a, MIG_HOOK_MIGRATE);
	cr_assert_eq(agent_journal_read(j, 0, 4, out, 8, &info), 1);
	cr_assert_eq(out[0].seq, 5);
	cr_assert_eq(out[0].pid, (uint32_t)getpid());
	f = fopen(path, "r");
	for (fd = 0; fgets(line, sizeof(line), f); fd++)
		;
	fclose(f);
	cr_assert_eq(fd, (int)(sizeof(before) / sizeof(before[0])) + 1);
	unlink(path);
	/* no file yet: nothing to take back */
	cr_assert_eq(agent_journal_preload(j, path, uuid_named, &err), 0, "%s", err.msg);
	mig_buf_free(&names);
}
