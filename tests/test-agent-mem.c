// SPDX-License-Identifier: MIT
/*
 * The agents' own memory during a migration: what each of the two agents
 * `migratectl start local local` spawns holds beyond guest RAM (the Rss of
 * every mapping but the guest's) stays within MEM_BUDGET_PERCENT of guest
 * RAM, sampled from /proc/PID/smaps for as long as the migration runs.  The
 * settings that need the most are used: all 16 streams, compressing.
 * Sampling can only miss a peak, never invent one, so the test makes no
 * assumption about timing; it insists that both agents were seen with
 * their guest mapped.
 */
#include <dirent.h>
#include <fcntl.h>

#include <migrate/control.h>
#include <migrate/policy.h>

#include "proc-fixture.h"

const int test_requires_kvm = 1;

#define GUEST_MIB 1024ULL

struct agent_peak {
	pid_t pid;
	uint64_t other_kib;       /* Rss of every mapping but guest RAM, at its peak */
	uint64_t guest_kib;       /* the guest mapping's Rss, at its peak */
};

/* The parent of pid, or -1. */
static pid_t parent_of(pid_t pid)
{
	char path[64], buf[512], *p;
	int ppid = -1;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	proc_slurp(path, buf, sizeof(buf));
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 1, " %*c %d", &ppid) != 1)
		return -1;
	return ppid;
}

/* One look at pid's mappings: the guest's is the one as large as its RAM. */
static bool sample(pid_t pid, uint64_t *ret_other, uint64_t *ret_guest)
{
	char path[64], line[256];
	unsigned long long size = 0, v;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	*ret_other = *ret_guest = 0;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "Size: %llu kB", &v) == 1)
			size = v;
		else if (sscanf(line, "Rss: %llu kB", &v) == 1)
			*(size >= GUEST_MIB << 10 ? ret_guest : ret_other) += v;
	}
	fclose(f);
	return true;
}

/* Every child of `parent` now: its agents. */
static void sample_agents(pid_t parent, struct agent_peak *a, unsigned *n, unsigned max)
{
	DIR *d = opendir("/proc");
	struct dirent *e;

	cr_assert_not_null(d);
	while ((e = readdir(d))) {
		pid_t pid = (pid_t)atoi(e->d_name);
		uint64_t other, guest;
		unsigned i;

		if (pid <= 0 || parent_of(pid) != parent || !sample(pid, &other, &guest))
			continue;
		for (i = 0; i < *n && a[i].pid != pid; i++)
			;
		if (i == *n) {
			cr_assert_lt(*n, max, "more children than agents");
			a[(*n)++] = (struct agent_peak){ .pid = pid };
		}
		if (other > a[i].other_kib)
			a[i].other_kib = other;
		if (guest > a[i].guest_kib)
			a[i].guest_kib = guest;
	}
	closedir(d);
}

Test(agent_mem, both_agents_stay_within_the_budget, .timeout = 300)
{
	char out[] = "/tmp/migratectl-test-XXXXXX", res[16384];
	struct agent_peak a[4] = { 0 };
	uint64_t budget_kib = (GUEST_MIB << 10) / 100 * MEM_BUDGET_PERCENT;
	unsigned n = 0;
	int fd = mkstemp(out), st;
	pid_t pid;

	cr_assert_geq(fd, 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(fd, 1);
		dup2(open("/dev/null", O_WRONLY), 2);
		execl(MIGRATECTL_PATH, "migratectl", "start", "local", "local", "--handover", "never",
		      "--json", "--streams", "16", "--compress", "zstd", "--lab",
		      "mem=1G,vcpus=1,wss=64M", (char *)NULL);
		_exit(127);
	}
	close(fd);
	while (waitpid(pid, &st, WNOHANG) == 0) {
		sample_agents(pid, a, &n, 4);
		usleep(20000);
	}
	proc_slurp(out, res, sizeof(res));
	unlink(out);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "migratectl start failed: %s", res);
	json_expect_str(res, "result", "completed");
	cr_assert_eq(n, 2, "%u agents seen, two expected", n);
	for (unsigned i = 0; i < n; i++) {
		cr_assert_eq(a[i].guest_kib, GUEST_MIB << 10, "agent %d: its guest RAM was never "
			     "seen mapped and faulted in (%llu KiB)", (int)a[i].pid,
			     (unsigned long long)a[i].guest_kib);
		cr_assert_lt(a[i].other_kib, budget_kib, "agent %d held %llu KiB beyond guest RAM "
			     "at its peak, over %u %% of %llu MiB (%llu KiB)", (int)a[i].pid,
			     (unsigned long long)a[i].other_kib, MEM_BUDGET_PERCENT, GUEST_MIB,
			     (unsigned long long)budget_kib);
		cr_log_info("agent %d: %llu KiB beyond guest RAM at its peak (budget %llu KiB)",
			    (int)a[i].pid, (unsigned long long)a[i].other_kib,
			    (unsigned long long)budget_kib);
	}
}
