// SPDX-License-Identifier: MIT
/*
 * The command line under hostile input: a --key-file that is a FIFO (or a
 * directory) is refused at once by every command that takes one; a malformed
 * agent --listen, an option given twice, and a --max-bandwidth too small for
 * round 0 within --timeout are usage errors (exit 2) before anything is
 * contacted; a guest larger than the host can give is refused by `vm create`,
 * `vm run` and a destination's MIG_INCOMING before any RAM is mapped.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <migrate/agent.h>
#include <migrate/engine.h>

#include "lab/lab-internal.h"
#include "lab-fixture.h"
#include "util.h"
#include "proc-fixture.h"

/* The --vm cases need a VM on an agent. */
const int test_requires_kvm = 1;

/* Killed after this many seconds: a command that hangs fails its test with
 * exit 137 instead of hanging the suite. */
#define RUN_LIMIT_S 20
/* An endpoint nothing listens on: a command that gets past its checks
 * fails there at once (exit 1). */
#define NOWHERE "unix:///nonexistent/migratectl-test.sock"
#define SOME_ID "123e4567-e89b-12d3-a456-426614174000"

/* proc_run under `timeout`; how long it took in *ret_s. */
static void run_timed(const char *args, struct run_result *r, double *ret_s)
{
	char cmd[2048];
	double t = fixture_now();

	snprintf(cmd, sizeof(cmd), "timeout -s KILL %d %s %s", RUN_LIMIT_S, MIGRATECTL_PATH, args);
	{
		char out[] = "/tmp/migratectl-test-XXXXXX", err[] = "/tmp/migratectl-test-XXXXXX";
		char sh[2560];
		int fo = mkstemp(out), fe = mkstemp(err), st;

		cr_assert(fo >= 0 && fe >= 0);
		close(fo);
		close(fe);
		snprintf(sh, sizeof(sh), "%s >%s 2>%s </dev/null", cmd, out, err);
		st = system(sh);
		cr_assert(WIFEXITED(st), "sh did not exit normally: %s", args);
		r->status = WEXITSTATUS(st);
		proc_slurp(out, r->out, sizeof(r->out));
		proc_slurp(err, r->err, sizeof(r->err));
		unlink(out);
		unlink(err);
	}
	if (ret_s)
		*ret_s = fixture_now() - t;
}

/* `migratectl ARGS` exits 2, at once, naming the problem, printing nothing
 * on stdout. */
static void expect_usage(const char *args, const char *needle)
{
	struct run_result r;
	double s;

	run_timed(args, &r, &s);
	cr_assert_neq(r.status, 137, "'%s' still ran after %d s (killed)", args, RUN_LIMIT_S);
	cr_assert_eq(r.status, 2, "'%s' exited %d, want 2 (stderr: %s)", args, r.status, r.err);
	cr_assert_not_null(strstr(r.err, needle), "'%s': stderr lacks '%s': %s", args, needle, r.err);
	cr_assert_eq(r.out[0], '\0', "'%s' printed to stdout: %s", args, r.out);
	cr_assert_lt(s, 5.0, "'%s' took %.1f s", args, s);
}

static void expect_no_vms(const char *ep, const char *key_opt)
{
	struct run_result r;
	char args[512];

	snprintf(args, sizeof(args), "vm list %s --json %s", ep, key_opt ? key_opt : "");
	run_timed(args, &r, NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "[]\n", "the agent holds a VM: %s", r.out);
}

/* ---- 9: a --key-file that is not a regular file ---- */

Test(cli, key_file_fifo_refused_without_blocking, .timeout = 180)
{
	char dir[] = "/tmp/migratectl-test-XXXXXX", key[96], fifo[96], ep[128], good[128];
	char args[512];
	const char *const cmds[] = {
		"start %s local --key-file %s",
		"start local %s --key-file %s",
		"vm create %s --name x --key-file %s",
		"vm list %s --key-file %s",
		"vm destroy %s x --key-file %s",
		"cancel %s " SOME_ID " --key-file %s",
	};
	pid_t a;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(key, sizeof(key), "%s/key", dir);
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	make_key_file(key, 1);
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	/* An agent that requires a key: a client that would load the key
	 * during the handshake blocks there in the old code. */
	snprintf(ep, sizeof(ep), "unix://%s/a.sock", dir);
	snprintf(good, sizeof(good), "--key-file %s", key);
	a = proc_agent(ep, key);
	proc_wait_agent(ep, good);
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++) {
		snprintf(args, sizeof(args), cmds[i], ep, fifo);
		expect_usage(args, "is a FIFO");
	}
	snprintf(args, sizeof(args), "agent --listen unix://%s/b.sock --key-file %s", dir, fifo);
	expect_usage(args, "is a FIFO");
	snprintf(args, sizeof(args), "agent --listen tcp://127.0.0.1:1 --key-file %s", fifo);
	expect_usage(args, "is a FIFO");
	/* other kinds say what they are */
	snprintf(args, sizeof(args), "vm list %s --key-file %s", ep, dir);
	expect_usage(args, "is a directory");
	expect_usage("cancel local " SOME_ID " --key-file /dev/null", "is a character device");
	/* the good key still works, and nothing was created */
	expect_no_vms(ep, good);
	proc_stop(a);
	unlink(fifo);
	unlink(key);
	snprintf(args, sizeof(args), "%s/a.sock", dir);
	unlink(args);
	rmdir(dir);
}

/* ---- 10: agent --listen ---- */

Test(cli, agent_listen_malformed_exit_2, .timeout = 120)
{
	char dir[] = "/tmp/migratectl-test-XXXXXX", key[96], args[1024], longp[300];

	cr_assert_not_null(mkdtemp(dir));
	snprintf(key, sizeof(key), "%s/key", dir);
	make_key_file(key, 1);
	snprintf(args, sizeof(args), "agent --listen tcp://127.0.0.1:0 --key-file %s", key);
	expect_usage(args, "--listen: endpoint \"tcp://127.0.0.1:0\": port 0 is out of range");
	snprintf(args, sizeof(args), "agent --listen tcp://127.0.0.1:99999 --key-file %s", key);
	expect_usage(args, "port 99999 is out of range");
	snprintf(args, sizeof(args), "agent --listen 127.0.0.1:0 --key-file %s", key);
	expect_usage(args, "out of range");
	memset(longp, 'x', 200);
	longp[200] = '\0';
	snprintf(args, sizeof(args), "agent --listen unix://%s/%s.sock", dir, longp);
	expect_usage(args, "unix sockets allow at most");
	snprintf(args, sizeof(args), "agent --listen ssh://host --key-file %s", key);
	expect_usage(args, "not on ssh://");
	expect_usage("agent --listen local", "not on \"local\"");
	expect_usage("agent --listen ftp://host:1", "unknown endpoint scheme");
	/* nothing listens: no socket file was made */
	snprintf(args, sizeof(args), "%s/%s.sock", dir, longp);
	cr_assert_neq(access(args, F_OK), 0);
	unlink(key);
	rmdir(dir);
}

/* ---- 12: options given twice ---- */

Test(cli, option_given_twice_exit_2, .timeout = 180)
{
	static const char *const start_twice[][2] = {
		{ "--streams 2 --streams 3", "--streams given twice" },
		{ "--stream 2 --streams 3", "--streams given twice" },
		{ "--timeout 10s --timeout 20s", "--timeout given twice" },
		{ "--timeout-action abort --timeout-action force", "--timeout-action given twice" },
		{ "--vm a --vm b", "--vm given twice" },
		{ "--lab mem=64M --lab mem=128M", "--lab given twice" },
		{ "--compress none --compress zstd", "--compress given twice" },
		{ "--downtime-limit 100 --downtime-limit 200", "--downtime-limit given twice" },
		{ "--max-bandwidth 1G --max-bandwidth 2G", "--max-bandwidth given twice" },
		{ "--checksum pages --checksum frames", "--checksum given twice" },
		{ "--verify --verify", "--verify given twice" },
		{ "--no-verify --no-verify", "--no-verify given twice" },
		{ "--json --json", "--json given twice" },
		{ "--key-file /k --key-file /k", "--key-file given twice" },
		{ "--verify --no-verify", "--verify and --no-verify exclude each other" },
		{ "--no-verify --verify", "--verify and --no-verify exclude each other" },
	};
	char args[512];

	/* The old code ran on, to fail at the unreachable source (exit 1). */
	for (size_t i = 0; i < ARRAY_SIZE(start_twice); i++) {
		snprintf(args, sizeof(args), "start " NOWHERE " local %s", start_twice[i][0]);
		expect_usage(args, start_twice[i][1]);
	}
	expect_usage("vm create " NOWHERE " --name a --name b", "--name given twice");
	expect_usage("vm create " NOWHERE " --name a --lab mem=64M --lab mem=128M",
		     "--lab given twice");
	expect_usage("vm list " NOWHERE " --json --json", "--json given twice");
	expect_usage("vm destroy " NOWHERE " a --key-file /k --key-file /k", "--key-file given twice");
	/* the old code took --mem 128M, then refused the working set */
	expect_usage("vm run --mem 64M --mem 128M --wss 1G", "--mem given twice");
	expect_usage("vm run --seconds 1 --seconds 2 --vcpus 0", "--seconds given twice");
	expect_usage("cancel " NOWHERE " " SOME_ID " --key-file /k --key-file /k",
		     "--key-file given twice");
	expect_usage("agent --listen unix:///nonexistent/a.sock --listen unix:///nonexistent/b.sock",
		     "--listen given twice");
	expect_usage("agent --listen unix:///nonexistent/a.sock --quiet --quiet",
		     "--quiet given twice");
}

/* ---- 12: --max-bandwidth against --timeout ---- */

Test(cli, bandwidth_too_small_for_round_0_with_lab, .timeout = 120)
{
	struct run_result r;

	/* 1 GiB at 1 MiB/s: round 0 alone takes 1024 s */
	expect_usage("start " NOWHERE " local --lab mem=1G --max-bandwidth 1M --timeout 10s",
		     "round 0");
	run_timed("start " NOWHERE " local --lab mem=1G --max-bandwidth 1M --timeout 10s", &r, NULL);
	cr_assert_not_null(strstr(r.err, "--max-bandwidth 1.0 MiB/s cannot move round 0 within "
				  "--timeout 10.0 s"), "%s", r.err);
	cr_assert_not_null(strstr(r.err, "all 1.0 GiB of guest RAM, at least 1024.0 s"), "%s", r.err);
	cr_assert_not_null(strstr(r.err, "raise --max-bandwidth above 102.4 MiB/s or --timeout "
				  "above 1024.0 s"), "%s", r.err);
	cr_assert_not_null(strstr(r.err, "--timeout-action force"), "%s", r.err);
	/* the default lab VM is 1 GiB too; abort is the default action */
	expect_usage("start " NOWHERE " local --max-bandwidth 1M --timeout 10s", "1024.0 s");
	expect_usage("start " NOWHERE " local --max-bandwidth 1M --timeout 10s --timeout-action abort",
		     "1024.0 s");
	/* a floor equal to the timeout cannot make it either */
	expect_usage("start " NOWHERE " local --lab mem=64M,wss=4M --max-bandwidth 1M --timeout 64s",
		     "64.0 s");

	/* force: a warning, then on to the (unreachable) source */
	run_timed("start " NOWHERE " local --max-bandwidth 1M --timeout 10s --timeout-action force",
		  &r, NULL);
	cr_assert_eq(r.status, 1, "exit %d: %s", r.status, r.err);
	cr_assert_not_null(strstr(r.err, "warning: round 0 sends all 1.0 GiB of guest RAM, at "
				  "least 1024.0 s at --max-bandwidth 1.0 MiB/s, past --timeout "
				  "10.0 s"), "%s", r.err);
	cr_assert_not_null(strstr(r.err, "source " NOWHERE), "%s", r.err);

	/* enough bandwidth, or no timeout: no word about it */
	run_timed("start " NOWHERE " local --lab mem=64M,wss=4M --max-bandwidth 100M --timeout 10s", &r, NULL);
	cr_assert_eq(r.status, 1, "exit %d: %s", r.status, r.err);
	cr_assert_null(strstr(r.err, "round 0"), "%s", r.err);
	run_timed("start " NOWHERE " local --max-bandwidth 1M", &r, NULL);
	cr_assert_eq(r.status, 1, "exit %d: %s", r.status, r.err);
	cr_assert_null(strstr(r.err, "round 0"), "%s", r.err);
}

/* With --vm the size is known after the lookup on SRC: refused there, with
 * nothing prepared on DST and the VM running on SRC. */
Test(cli, bandwidth_too_small_for_round_0_with_vm, .timeout = 240)
{
	struct run_result r;
	char dir[] = "/tmp/migratectl-test-XXXXXX", ea[128], eb[128], args[512];
	pid_t a, b;

	cr_assert_not_null(mkdtemp(dir));
	a = proc_agent_with_vm(dir, "a.sock", "v", ea, sizeof(ea));   /* 512 MiB */
	snprintf(eb, sizeof(eb), "unix://%s/b.sock", dir);
	b = proc_agent(eb, NULL);
	proc_wait_agent(eb, NULL);

	snprintf(args, sizeof(args), "start %s %s --vm v --max-bandwidth 1M --timeout 10s --json",
		 ea, eb);
	run_timed(args, &r, NULL);
	cr_assert_eq(r.status, 2, "exit %d: %s", r.status, r.err);
	cr_assert_not_null(strstr(r.err, "all 512.0 MiB of guest RAM, at least 512.0 s"), "%s",
			   r.err);
	json_expect_str(r.out, "result", "failed");
	json_expect_str(r.out, "owner", "source");
	expect_no_vms(eb, NULL);
	snprintf(args, sizeof(args), "vm list %s --json", ea);
	run_timed(args, &r, NULL);
	cr_assert_not_null(strstr(r.out, "\"state\":\"running\""), "%s", r.out);

	/* force warns and goes on: here to a destination that already has a
	 * VM of that name, so it stops at the preparation */
	snprintf(args, sizeof(args), "vm create %s --name v --lab mem=4M,vcpus=1,wss=0", eb);
	run_timed(args, &r, NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	snprintf(args, sizeof(args), "start %s %s --vm v --max-bandwidth 1M --timeout 10s "
		 "--timeout-action force", ea, eb);
	run_timed(args, &r, NULL);
	cr_assert_eq(r.status, 1, "exit %d: %s", r.status, r.err);
	cr_assert_not_null(strstr(r.err, "warning: round 0 sends all 512.0 MiB"), "%s", r.err);
	cr_assert_not_null(strstr(r.err, "already exists on the destination"), "%s", r.err);
	snprintf(args, sizeof(args), "vm list %s --json", ea);
	run_timed(args, &r, NULL);
	cr_assert_not_null(strstr(r.out, "\"state\":\"running\""), "%s", r.out);

	proc_stop(a);
	proc_stop(b);
	snprintf(args, sizeof(args), "%s/a.sock", dir);
	unlink(args);
	snprintf(args, sizeof(args), "%s/b.sock", dir);
	unlink(args);
	rmdir(dir);
}

/* ---- 13: a guest larger than the host can give ---- */

#define HUGE_GUEST (64ULL << 30)

static void skip_unless_huge_guest_too_large(void)
{
	char what[160];

	if (lab_host_mem_available(NULL, what, sizeof(what)) >= HUGE_GUEST)
		cr_skip_test("this host can give a 64 GiB guest (%s)", what);
}

static void expect_too_large(const char *msg)
{
	cr_assert_not_null(strstr(msg, "the guest needs 64 GiB of RAM, but this host can give "),
			   "%s", msg);
	cr_assert_not_null(strstr(msg, "choose a smaller mem="), "%s", msg);
}

Test(cli, vm_create_larger_than_host_refused, .timeout = 120)
{
	struct run_result r;
	char dir[] = "/tmp/migratectl-test-XXXXXX", ep[128], args[512];
	pid_t a;

	skip_unless_huge_guest_too_large();
	cr_assert_not_null(mkdtemp(dir));
	snprintf(ep, sizeof(ep), "unix://%s/a.sock", dir);
	a = proc_agent(ep, NULL);
	proc_wait_agent(ep, NULL);
	snprintf(args, sizeof(args), "vm create %s --name big --lab mem=64G", ep);
	run_timed(args, &r, NULL);
	cr_assert_eq(r.status, 1, "exit %d: %s", r.status, r.err);
	expect_too_large(r.err);
	expect_no_vms(ep, NULL);
	proc_stop(a);
	snprintf(args, sizeof(args), "%s/a.sock", dir);
	unlink(args);
	rmdir(dir);
}

Test(cli, vm_run_larger_than_host_refused, .timeout = 60)
{
	struct run_result r;

	skip_unless_huge_guest_too_large();
	run_timed("vm run --mem 64G --seconds 1", &r, NULL);
	cr_assert_eq(r.status, 1, "exit %d: %s", r.status, r.err);
	expect_too_large(r.err);
	cr_assert_eq(r.out[0], '\0', "%s", r.out);
}

/* The MSI devices raise LPIs through an ITS: an x86 lab VM has none. */
Test(cli, msi_devices_refused_on_x86, .timeout = 60)
{
	struct run_result r;

	if (strcmp(MIGRATECTL_ARCH, "x86_64"))
		cr_skip_test("the lab VM here is %s's: it has MSI devices", MIGRATECTL_ARCH);
	run_timed("start local local --lab mem=64M,vcpus=1,wss=4M,msi=1", &r, NULL);
	cr_assert_neq(r.status, 0, "exit %d: %s", r.status, r.err);
	cr_assert(strstr(r.err, "msi=1") && strstr(r.err, "ITS") && strstr(r.err, "arm64"), "%s",
		  r.err);
}

/* The destination's preparation refuses it: nothing kept there. */
Test(cli, incoming_larger_than_host_refused, .timeout = 120)
{
	struct mig_error err = { 0 };
	struct mig_client c;
	struct mig_incoming in = { 0 };
	struct lab_config cfg;
	char dir[] = "/tmp/migratectl-test-XXXXXX", ep[128], sock[128];
	pid_t a;
	int r;

	skip_unless_huge_guest_too_large();
	cr_assert_not_null(mkdtemp(dir));
	snprintf(ep, sizeof(ep), "unix://%s/a.sock", dir);
	a = proc_agent(ep, NULL);
	proc_wait_agent(ep, NULL);
	cr_assert_eq(mig_client_open(ep, NULL, &c, &err), 0, "%s", err.msg);
	for (int i = 0; i < 16; i++)
		in.id[i] = (uint8_t)(i + 1);
	xport_random(in.secret, sizeof(in.secret));
	snprintf(in.name, sizeof(in.name), "big");
	in.streams = 1;
	lab_config_default(&cfg);
	cfg.mem_bytes = HUGE_GUEST;
	lab_to_wire(&cfg, &in.lab);
	snprintf(in.listen_host, sizeof(in.listen_host), "127.0.0.1");
	r = mig_client_call(&c, MIG_OP_MIG_INCOMING, &in, sizeof(in), NULL, &err);
	cr_assert_eq(r, -ENOMEM, "MIG_INCOMING of a 64 GiB guest: %d %s", r, err.msg);
	expect_too_large(err.msg);
	mig_client_close(&c);
	expect_no_vms(ep, NULL);
	proc_stop(a);
	snprintf(sock, sizeof(sock), "%s/a.sock", dir);
	unlink(sock);
	rmdir(dir);
}

/* The limits read from a made-up /proc and cgroup v2 tree. */

static void put_file(const char *root, const char *path, const char *text)
{
	char full[512], cmd[1200];
	FILE *f;

	snprintf(cmd, sizeof(cmd), "mkdir -p \"$(dirname '%s%s')\"", root, path);
	cr_assert_eq(system(cmd), 0);
	snprintf(full, sizeof(full), "%s%s", root, path);
	f = fopen(full, "w");
	cr_assert_not_null(f, "%s", full);
	fputs(text, f);
	fclose(f);
}

Test(cli, host_memory_from_meminfo_and_cgroups)
{
	char root[] = "/tmp/migratectl-test-XXXXXX", what[160], cmd[200];
	uint64_t v;

	cr_assert_not_null(mkdtemp(root));
	/* nothing to read: no limit */
	v = lab_host_mem_available(root, what, sizeof(what));
	cr_assert_eq(v, UINT64_MAX, "%s", what);

	put_file(root, "/proc/meminfo", "MemTotal:       8000000 kB\nMemFree:  100 kB\n"
		 "MemAvailable:    4000000 kB\nBuffers: 1 kB\n");
	v = lab_host_mem_available(root, what, sizeof(what));
	cr_assert_eq(v, 4000000ULL * 1024);
	cr_assert_str_eq(what, "MemAvailable");

	/* cgroup v2 at /sys/fs/cgroup; this process in /a/b */
	put_file(root, "/proc/self/cgroup", "0::/a/b\n");
	put_file(root, "/proc/self/mountinfo",
		 "22 1 0:20 / /proc rw - proc proc rw\n"
		 "30 22 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n");
	/* /a/b: no limit; /a: 1 GiB max, 900 MiB used of which 100 MiB is
	 * page cache: room 224 MiB */
	put_file(root, "/sys/fs/cgroup/a/b/memory.max", "max\n");
	put_file(root, "/sys/fs/cgroup/a/b/memory.current", "10000\n");
	put_file(root, "/sys/fs/cgroup/a/memory.max", "1073741824\n");
	put_file(root, "/sys/fs/cgroup/a/memory.current", "943718400\n");
	put_file(root, "/sys/fs/cgroup/a/memory.stat", "anon 1\nfile 104857600\n"
		 "active_file 52428800\ninactive_file 52428800\nshmem 0\n");
	v = lab_host_mem_available(root, what, sizeof(what));
	cr_assert_eq(v, 224ULL << 20, "%llu", (unsigned long long)v);
	cr_assert_str_eq(what, "memory.max of cgroup /a, less what it uses");

	/* a tighter limit below it wins */
	put_file(root, "/sys/fs/cgroup/a/b/memory.max", "209715200\n");
	v = lab_host_mem_available(root, what, sizeof(what));
	cr_assert_eq(v, 209715200ULL - 10000, "%llu", (unsigned long long)v);
	cr_assert_str_eq(what, "memory.max of cgroup /a/b, less what it uses");

	/* over its limit: nothing */
	put_file(root, "/sys/fs/cgroup/a/b/memory.current", "309715200\n");
	cr_assert_eq(lab_host_mem_available(root, what, sizeof(what)), 0);

	/* a mount of a subtree (root /a): /a/b is b under the mount point */
	put_file(root, "/sys/fs/cgroup/a/b/memory.current", "10000\n");
	put_file(root, "/proc/self/mountinfo",
		 "30 22 0:26 /a /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
	put_file(root, "/sys/fs/cgroup/b/memory.max", "1048576\n");
	put_file(root, "/sys/fs/cgroup/b/memory.current", "0\n");
	v = lab_host_mem_available(root, what, sizeof(what));
	cr_assert_eq(v, 1048576, "%llu %s", (unsigned long long)v, what);
	cr_assert_str_eq(what, "memory.max of cgroup /b, less what it uses");

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	cr_assert_eq(system(cmd), 0);
}
