/* SPDX-License-Identifier: MIT */
/*
 * What a process holds, from /proc, for the chaos runner: after each run
 * every agent's descriptors, threads, children and memory must come back
 * to where they were before it, and a hung agent's stacks are kept for
 * the report (docs/chaos-hostile.md).
 */
#ifndef MIGRATE_PROCSTAT_H
#define MIGRATE_PROCSTAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <migrate/error.h>

struct chaos_proc_stat {
	unsigned fds;                   /* entries of /proc/PID/fd */
	unsigned threads;               /* Threads: of /proc/PID/status */
	unsigned children;              /* processes whose PPid is PID */
	uint64_t rss_kb;                /* VmRSS: */
	unsigned fd_sockets, fd_anon;   /* of the fds: sockets; anon_inode (io_uring, kvm ...) */
};

/* A snapshot of process pid.  -ESRCH once it is gone. */
int chaos_proc_stat(pid_t pid, struct chaos_proc_stat *st, struct mig_error *err);

/*
 * Whether now is within tolerance of base: fds at most base + tol_fds,
 * threads at most base + tol_threads, no more children, RSS at most base +
 * tol_rss_kb.  If not, why (n bytes) names every count that grew and by
 * how much.  Fewer than the base is always within.
 */
bool chaos_proc_within(const struct chaos_proc_stat *base, const struct chaos_proc_stat *now,
		       unsigned tol_fds, unsigned tol_threads, uint64_t tol_rss_kb,
		       char *why, size_t n);

/*
 * Every thread's stack of a process (which may be hung or stopped) into
 * the file path: with gdb where it is installed (gdb -batch -p PID -ex
 * 'thread apply all bt', killed after CHAOS_STACKS_GDB_MS), else from
 * /proc/PID/task/TID/{comm,wchan,stat,syscall,stack} (stack where the
 * kernel lets us read it).  The file's first line names the method.
 */
#define CHAOS_STACKS_GDB_MS 30000
int chaos_proc_stacks(pid_t pid, const char *path, struct mig_error *err);
/* The same with the method chosen: GDB fails (-ENOENT) where there is no
 * gdb; AUTO is chaos_proc_stacks(). */
enum chaos_stacks_method { CHAOS_STACKS_AUTO, CHAOS_STACKS_GDB, CHAOS_STACKS_PROC };
int chaos_proc_stacks_by(pid_t pid, const char *path, enum chaos_stacks_method how,
			 struct mig_error *err);

/* The state letter of /proc/PID/stat ('R', 'S', 'D', 'T', 'Z' ...), or 0
 * if there is no such process. */
char chaos_proc_state(pid_t pid);

#endif
