// SPDX-License-Identifier: MIT
/*
 * The vCPU journals of a real migration between two agents: the source's
 * vCPUs start when the VM is created and stop for the switchover, the
 * destination's start after that, and never-two finds no instant at which
 * both ran.  The agents' --journal files hold what their rings hold, even
 * after a SIGKILL.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include <migrate/agent.h>
#include <migrate/journal.h>
#include <migrate/vm.h>

#include "lab-fixture.h"
#include "proc-fixture.h"

const int test_requires_kvm = 1;

#define MAXREC 64

struct journal {
	struct mig_journal_rec r[MAXREC];
	size_t n;
};

/* The agent's ring, through MIG_OP_JOURNAL. */
static void ring_read(const char *endpoint, struct journal *j)
{
	struct mig_error err = { 0 };
	struct mig_buf b = { 0 };
	struct mig_journal_reply info;
	struct mig_client c;

	cr_assert_eq(mig_client_open(endpoint, NULL, &c, &err), 0, "%s", err.msg);
	cr_assert_eq(mig_client_journal(&c, 0, &b, &info, &err), 0, "%s", err.msg);
	mig_client_close(&c);
	j->n = b.len / sizeof(j->r[0]);
	cr_assert_leq(j->n, MAXREC);
	memcpy(j->r, b.data, j->n * sizeof(j->r[0]));
	cr_assert_eq(info.dropped, 0);
	cr_assert_eq(info.next_seq, j->n + 1);
	mig_buf_free(&b);
}

/* The agent's --journal file, a record a line, none torn. */
static void file_read(const char *path, struct journal *j)
{
	struct mig_error err = { 0 };
	struct mig_buf b = { 0 };
	unsigned torn = 9;

	cr_assert_eq(mig_journal_file_load(path, &b, &torn, &err), 0, "%s", err.msg);
	cr_assert_eq(torn, 0);
	j->n = b.len / sizeof(j->r[0]);
	cr_assert_leq(j->n, MAXREC);
	memcpy(j->r, b.data, b.len);
	mig_buf_free(&b);
}

/* The index of the first record of vCPU `vcpu` with event `ev`, or -1. */
static int find(const struct journal *j, uint32_t vcpu, uint32_t ev)
{
	for (size_t i = 0; i < j->n; i++)
		if (j->r[i].vcpu == vcpu && j->r[i].event == ev)
			return (int)i;
	return -1;
}

static int count(const struct journal *j, uint32_t ev)
{
	int n = 0;

	for (size_t i = 0; i < j->n; i++)
		n += j->r[i].event == ev;
	return n;
}

/* A pair of agents, a VM `name` of `vcpus` on the source, migrated to the
 * destination; *r holds start's --json output. */
static void migrate_one(struct proc_pair *t, bool journals, const char *name, unsigned vcpus,
			struct run_result *r)
{
	char args[512];

	proc_pair_start(t, NULL, NULL, journals);
	snprintf(args, sizeof(args), "vm create %s --name %s --lab mem=64M,vcpus=%u,wss=4M",
		 t->src, name, vcpus);
	proc_run(args, r);
	cr_assert_eq(r->status, 0, "%s", r->err);
	snprintf(args, sizeof(args), "start %s %s --vm %s --json", t->src, t->dst, name);
	proc_run(args, r);
	cr_assert_eq(r->status, 0, "%s", r->err);
}

Test(journal, a_migration_stops_the_source_before_the_destination_starts, .timeout = 120)
{
	static struct journal src, dst, fsrc, fdst;
	struct mig_journal_src both[2];
	struct mig_error err = { 0 };
	struct proc_pair t;
	struct run_result r;
	uint8_t id[16];
	char args[512], idtext[64];
	uint64_t last_stop_rt = 0, last_stop_mono = 0, first_start_rt = UINT64_MAX,
		 first_start_mono = UINT64_MAX;
	size_t n;

	migrate_one(&t, true, "jv", 2, &r);
	cr_assert_not_null(json_field(r.out, "id", idtext, sizeof(idtext)), "%s", r.out);
	cr_assert_eq(uuid_parse(idtext, id), 0, "%s", idtext);

	ring_read(t.src, &src);
	ring_read(t.dst, &dst);
	/* source: each vCPU started (at create, no migration) and stopped (for
	 * this migration), once; destination: each started for it, once */
	cr_assert_eq(src.n, 4);
	cr_assert_eq(dst.n, 2);
	cr_assert_eq(count(&dst, MIG_VCPU_RUN_STOP), 0, "the destination's copy runs on");
	for (uint32_t v = 0; v < 2; v++) {
		int a = find(&src, v, MIG_VCPU_RUN_START), b = find(&src, v, MIG_VCPU_RUN_STOP);
		int c = find(&dst, v, MIG_VCPU_RUN_START);

		cr_assert(a >= 0 && b > a && c >= 0, "vCPU %u: start %d stop %d there %d", v, a, b, c);
		cr_assert_str_eq(src.r[a].vm, "jv");
		cr_assert_str_eq(dst.r[c].vm, "jv");
		cr_assert_eq(memcmp(src.r[b].mig_id, id, 16), 0, "the stop names the migration");
		cr_assert_eq(memcmp(dst.r[c].mig_id, id, 16), 0, "the start names the migration");
		cr_assert_neq(src.r[a].pid, dst.r[c].pid, "two agents");
		if (src.r[b].realtime_ns > last_stop_rt)
			last_stop_rt = src.r[b].realtime_ns;
		if (src.r[b].monotonic_ns > last_stop_mono)
			last_stop_mono = src.r[b].monotonic_ns;
		if (dst.r[c].realtime_ns < first_start_rt)
			first_start_rt = dst.r[c].realtime_ns;
		if (dst.r[c].monotonic_ns < first_start_mono)
			first_start_mono = dst.r[c].monotonic_ns;
	}
	cr_assert_lt(last_stop_mono, first_start_mono, "the source stopped last at %llu, the "
		     "destination started first at %llu", (unsigned long long)last_stop_mono,
		     (unsigned long long)first_start_mono);
	cr_assert_lt(last_stop_rt, first_start_rt);
	both[0] = (struct mig_journal_src){ "src", src.r, src.n };
	both[1] = (struct mig_journal_src){ "dst", dst.r, dst.n };
	cr_assert_eq(mig_never_two(both, 2, MIG_JOURNAL_MONOTONIC, NULL, 0, &n, &err), 0);
	cr_assert_eq(mig_never_two(both, 2, MIG_JOURNAL_REALTIME, NULL, 0, &n, &err), 0);

	/* `migratectl journal --json` prints the same records as lines */
	snprintf(args, sizeof(args), "journal %s --json", t.src);
	proc_run(args, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, "\"vm\":\"jv\"") && strstr(r.out, "\"event\":\"stop\""), "%s", r.out);
	cr_assert(strstr(r.out, idtext), "%s", r.out);

	/* SIGKILL both: their files still hold every record, as the rings did */
	proc_pair_down_keep(&t);
	file_read(t.src_journal, &fsrc);
	file_read(t.dst_journal, &fdst);
	cr_assert_eq(fsrc.n, src.n);
	cr_assert_eq(fdst.n, dst.n);
	cr_assert_eq(memcmp(fsrc.r, src.r, src.n * sizeof(src.r[0])), 0);
	cr_assert_eq(memcmp(fdst.r, dst.r, dst.n * sizeof(dst.r[0])), 0);
	proc_pair_down(&t);
}

/* The check sees a broken hand-over: the same journals with the
 * destination's first start moved before the source's last stop. */
Test(journal, the_check_would_see_the_destination_start_early, .timeout = 120)
{
	static struct journal src, dst;
	struct mig_journal_src both[2];
	struct mig_overlap o[4];
	struct mig_error err = { 0 };
	struct proc_pair t;
	struct run_result r;
	size_t n = 0;
	int last;

	migrate_one(&t, false, "jw", 1, &r);
	ring_read(t.src, &src);
	ring_read(t.dst, &dst);
	proc_pair_down(&t);
	last = find(&src, 0, MIG_VCPU_RUN_STOP);
	cr_assert_geq(last, 0);
	dst.r[0].monotonic_ns = src.r[last].monotonic_ns - 1;
	both[0] = (struct mig_journal_src){ "src", src.r, src.n };
	both[1] = (struct mig_journal_src){ "dst", dst.r, dst.n };
	cr_assert_eq(mig_never_two(both, 2, MIG_JOURNAL_MONOTONIC, o, 4, &n, &err), 1);
	cr_assert_eq(n, 1);
	cr_assert_eq(o[0].overlap_ns, 1);
	cr_assert_str_eq(o[0].vm, "jw");
}

/* A journal the agent could not write, or a --since that is no time, is a
 * usage error that says what to give instead, before anything runs. */
Test(journal, bad_options_are_usage_errors, .timeout = 60)
{
	struct run_result r;

	proc_run("agent --listen unix:///tmp/migratectl-never.sock --journal /nonexistent-dir/j", &r);
	cr_assert_eq(r.status, 2, "%s", r.err);
	cr_assert(strstr(r.err, "--journal /nonexistent-dir/j") && strstr(r.err, "append"), "%s",
		  r.err);
	proc_run("journal unix:///tmp/migratectl-never.sock --since yesterday", &r);
	cr_assert_eq(r.status, 2, "%s", r.err);
	cr_assert(strstr(r.err, "--since 'yesterday'") && strstr(r.err, "nanoseconds"), "%s", r.err);
	proc_run("journal", &r);
	cr_assert_eq(r.status, 2, "%s", r.err);
	cr_assert(strstr(r.err, "usage: migratectl journal ENDPOINT"), "%s", r.err);
}
