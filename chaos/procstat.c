// SPDX-License-Identifier: MIT
/*
 * A process's resources and stacks from /proc (include/migrate/procstat.h).
 * The chaos runner compares an agent's counts before and after a run: a
 * descriptor, thread or child that stays behind is a leak the product's
 * own tests cannot see, because they end the process.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <migrate/procstat.h>

#include "util.h"

/* Counts the descriptors of pid and what kind they are.  -errno if the
 * process (or its fd folder) is not there. */
static int count_fds(pid_t pid, struct chaos_proc_stat *st)
{
	char path[64], link[64];
	struct dirent *de;
	DIR *d;
	int dfd;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (!d)
		return -errno;
	dfd = dirfd(d);
	while ((de = readdir(d))) {
		ssize_t n;

		if (de->d_name[0] == '.')
			continue;
		/* our own opendir() is one of ours: not the process's */
		if (pid == getpid() && atoi(de->d_name) == dfd)
			continue;
		st->fds++;
		n = readlinkat(dfd, de->d_name, link, sizeof(link) - 1);
		if (n < 0)
			continue;         /* closed in between: still counted once */
		link[n] = '\0';
		if (!strncmp(link, "socket:", 7))
			st->fd_sockets++;
		else if (!strncmp(link, "anon_inode:", 11))
			st->fd_anon++;
	}
	closedir(d);
	return 0;
}

/* Threads and VmRSS from /proc/PID/status (a zombie has no VmRSS: 0). */
static int read_status(pid_t pid, struct chaos_proc_stat *st)
{
	char path[64], line[256];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long v;

		if (sscanf(line, "Threads: %llu", &v) == 1)
			st->threads = (unsigned)v;
		else if (sscanf(line, "VmRSS: %llu", &v) == 1)
			st->rss_kb = v;
	}
	fclose(f);
	return 0;
}

/* The stat line's fields after the command (which may hold spaces and
 * parentheses): from the state letter on.  NULL if unreadable. */
static const char *stat_tail(pid_t pid, char *buf, size_t n)
{
	char path[64];
	const char *p;
	int fd;
	ssize_t got;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	got = read(fd, buf, n - 1);
	close(fd);
	if (got <= 0)
		return NULL;
	buf[got] = '\0';
	p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p + 2 : NULL;
}

/* Processes whose parent is pid: every /proc/N/stat's fourth field. */
static unsigned count_children(pid_t pid)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	unsigned n = 0;

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		char buf[512];
		const char *t;
		char state;
		int ppid;

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		t = stat_tail(atoi(de->d_name), buf, sizeof(buf));
		if (t && sscanf(t, "%c %d", &state, &ppid) == 2 && ppid == pid)
			n++;
	}
	closedir(d);
	return n;
}

int chaos_proc_stat(pid_t pid, struct chaos_proc_stat *st, struct mig_error *err)
{
	int r;

	memset(st, 0, sizeof(*st));
	r = read_status(pid, st);
	if (r == 0)
		r = count_fds(pid, st);
	if (r < 0)
		return mig_error_set(err, r == -ENOENT ? -ESRCH : r, "process %d: %s", (int)pid,
				     r == -ENOENT ? "no such process" : strerror(-r));
	st->children = count_children(pid);
	return 0;
}

/* Appends "what +d (a -> b)" to why when now exceeds base by more than tol. */
static bool grew(const char *what, uint64_t base, uint64_t now, uint64_t tol, char *why,
		 size_t n, size_t *at)
{
	if (now <= base + tol)
		return false;
	if (*at < n) {
		int w = snprintf(why + *at, n - *at, "%s%s +%" PRIu64 " (%" PRIu64 " -> %" PRIu64
				 ", tolerance %" PRIu64 ")", *at ? "; " : "", what, now - base,
				 base, now, tol);

		*at += w > 0 ? (size_t)w : 0;
	}
	return true;
}

bool chaos_proc_within(const struct chaos_proc_stat *base, const struct chaos_proc_stat *now,
		       unsigned tol_fds, unsigned tol_threads, uint64_t tol_rss_kb,
		       char *why, size_t n)
{
	size_t at = 0;
	bool bad = false;

	if (n)
		why[0] = '\0';
	bad |= grew("fds", base->fds, now->fds, tol_fds, why, n, &at);
	bad |= grew("threads", base->threads, now->threads, tol_threads, why, n, &at);
	bad |= grew("children", base->children, now->children, 0, why, n, &at);
	bad |= grew("rss_kb", base->rss_kb, now->rss_kb, tol_rss_kb, why, n, &at);
	if (bad && at < n) {
		/* the kinds of descriptor, to tell a socket from a ring */
		snprintf(why + at, n - at, " [sockets %u -> %u, anon_inode %u -> %u]",
			 base->fd_sockets, now->fd_sockets, base->fd_anon, now->fd_anon);
	}
	return !bad;
}

char chaos_proc_state(pid_t pid)
{
	char buf[512];
	const char *t = stat_tail(pid, buf, sizeof(buf));

	return t ? t[0] : 0;
}

/* ---- stacks ---- */

/* Whether an executable `name` is on PATH; its path into buf. */
static bool find_program(const char *name, char *buf, size_t n)
{
	const char *path = getenv("PATH");

	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path) {
		size_t len = strcspn(path, ":");

		snprintf(buf, n, "%.*s/%s", (int)len, path, name);
		if (len && access(buf, X_OK) == 0)
			return true;
		path += len + (path[len] == ':');
	}
	return false;
}

/* Copies the small file /proc/PID/task/TID/what into f, as "  what: text". */
static void copy_task_file(FILE *f, pid_t pid, const char *tid, const char *what)
{
	char path[96], buf[4096];
	ssize_t got;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/task/%s/%s", (int)pid, tid, what);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	got = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	if (fd >= 0)
		close(fd);
	if (got < 0) {
		fprintf(f, "  %s: (unreadable: %s)\n", what, strerror(errno));
		return;
	}
	buf[got] = '\0';
	while (got > 0 && buf[got - 1] == '\n')
		buf[--got] = '\0';
	/* stack is several lines; the rest are one */
	fprintf(f, "  %s:%s%s\n", what, strchr(buf, '\n') ? "\n" : " ", buf);
}

static int stacks_proc(pid_t pid, FILE *f, struct mig_error *err)
{
	static const char *const files[] = { "comm", "wchan", "stat", "syscall", "stack" };
	char path[64];
	struct dirent *de;
	unsigned n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d)
		return mig_error_set(err, -ESRCH, "process %d: %s", (int)pid, strerror(errno));
	fprintf(f, "method: /proc (each thread's comm, wchan, stat, syscall and kernel stack)\n");
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		fprintf(f, "thread %s\n", de->d_name);
		for (size_t i = 0; i < ARRAY_SIZE(files); i++)
			copy_task_file(f, pid, de->d_name, files[i]);
		n++;
	}
	closedir(d);
	fprintf(f, "%u threads\n", n);
	return 0;
}

/*
 * gdb attached to pid, its output appended to fd; killed (with anything
 * it started: its own process group) after CHAOS_STACKS_GDB_MS.  Returns 0
 * if gdb exited 0, else -ETIME or -EIO.
 */
static int run_gdb(const char *gdb, pid_t pid, int fd)
{
	uint64_t end = mig_now_ms() + CHAOS_STACKS_GDB_MS;
	char target[16];
	pid_t g;
	int st;

	snprintf(target, sizeof(target), "%d", (int)pid);
	g = fork();
	if (g < 0)
		return -errno;
	if (g == 0) {
		int null = open("/dev/null", O_RDONLY);

		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (null >= 0)
			dup2(null, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		execl(gdb, "gdb", "-batch", "-nx", "-p", target, "-ex", "set pagination off",
		      "-ex", "thread apply all bt", (char *)NULL);
		_exit(127);
	}
	setpgid(g, g);
	for (;;) {
		pid_t w = waitpid(g, &st, WNOHANG);

		if (w == g)
			return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
		if (w < 0 && errno != EINTR)
			return -errno;
		if (mig_now_ms() >= end) {
			kill(-g, SIGKILL);
			kill(g, SIGKILL);
			waitpid(g, &st, 0);
			return -ETIME;
		}
		usleep(20000);
	}
}

int chaos_proc_stacks_by(pid_t pid, const char *path, enum chaos_stacks_method how,
			 struct mig_error *err)
{
	char gdb[512], comm[64] = "?", cpath[64];
	bool have_gdb = how != CHAOS_STACKS_PROC && find_program("gdb", gdb, sizeof(gdb));
	FILE *f;
	int r = 0;

	if (how == CHAOS_STACKS_GDB && !have_gdb)
		return mig_error_set(err, -ENOENT, "no gdb on PATH");
	if (!chaos_proc_state(pid))
		return mig_error_set(err, -ESRCH, "process %d: no such process", (int)pid);
	f = fopen(path, "we");
	if (!f)
		return mig_error_set(err, -errno, "%s: %s", path, strerror(errno));
	snprintf(cpath, sizeof(cpath), "/proc/%d/comm", (int)pid);
	{
		FILE *c = fopen(cpath, "re");

		if (c) {
			if (fgets(comm, sizeof(comm), c))
				comm[strcspn(comm, "\n")] = '\0';
			fclose(c);
		}
	}
	fprintf(f, "stacks of process %d (%s), state %c\n", (int)pid, comm, chaos_proc_state(pid));
	if (have_gdb) {
		fprintf(f, "method: gdb (%s -batch -p %d -ex 'thread apply all bt')\n", gdb, (int)pid);
		fflush(f);
		r = run_gdb(gdb, pid, fileno(f));
		/* gdb wrote through its own descriptor: ours appends after it */
		fseek(f, 0, SEEK_END);
		if (r < 0) {
			fprintf(f, "gdb failed: %s\n", r == -ETIME ? "killed after its time limit" :
				strerror(-r));
			if (how == CHAOS_STACKS_GDB)
				mig_error_set(err, r, "gdb on process %d: %s", (int)pid,
					      r == -ETIME ? "timed out" : "failed");
			else
				r = stacks_proc(pid, f, err);
		}
	} else {
		r = stacks_proc(pid, f, err);
	}
	if (fclose(f) != 0 && r == 0)
		r = mig_error_set(err, -errno, "%s: %s", path, strerror(errno));
	return r;
}

int chaos_proc_stacks(pid_t pid, const char *path, struct mig_error *err)
{
	return chaos_proc_stacks_by(pid, path, CHAOS_STACKS_AUTO, err);
}
