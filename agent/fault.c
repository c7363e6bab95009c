// SPDX-License-Identifier: MIT
/*
 * Chaos mode in the agent: a fault plan fires at the nth engine point it
 * matches.  An ERROR fails that point; a KILL is this process's death right
 * there, as a host or agent crash would be; a STOP freezes every thread of
 * the agent for the plan's time, as SIGSTOP from outside would, and a
 * grandchild process wakes it (a stopped process cannot wake itself).
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fault.h"
#include "util.h"

static void say(struct agent_fault *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void agent_faults_init(struct agent_faults *fs, void (*log)(void *, const char *), void *arg)
{
	memset(fs->plans, 0, sizeof(fs->plans));
	pthread_mutex_init(&fs->lock, NULL);
	fs->log = log;
	fs->log_arg = arg;
}

int agent_faults_arm(struct agent_faults *fs, const struct mig_fault_plan *p,
		     struct mig_error *err)
{
	struct mig_fault_plan *slot = NULL;
	int r = 0;

	if (p->action != 0) {
		r = mig_fault_plan_check(p, err);
		if (r < 0)
			return r;
	} else if (!memchr(p->vm, '\0', sizeof(p->vm))) {
		return mig_error_set(err, -EINVAL, "fault plan: no VM name");
	}
	pthread_mutex_lock(&fs->lock);
	for (unsigned i = 0; i < AGENT_FAULT_PLANS; i++) {
		struct mig_fault_plan *q = &fs->plans[i];

		if (q->vm[0] && !strcmp(q->vm, p->vm)) {
			slot = q;
			break;
		}
		if (!q->vm[0] && !slot)
			slot = q;
	}
	if (!slot)
		r = mig_error_set(err, -ENOSPC, "fault plan: %d VMs have plans armed already",
				  AGENT_FAULT_PLANS);
	else if (p->action == 0)
		memset(slot, 0, sizeof(*slot));
	else
		*slot = *p;
	pthread_mutex_unlock(&fs->lock);
	return r;
}

struct agent_fault *agent_faults_take(struct agent_faults *fs, const char *name)
{
	struct agent_fault *f = NULL;

	pthread_mutex_lock(&fs->lock);
	for (unsigned i = 0; i < AGENT_FAULT_PLANS; i++) {
		struct mig_fault_plan *q = &fs->plans[i];

		if (!q->vm[0] || strcmp(q->vm, name))
			continue;
		f = calloc(1, sizeof(*f));
		if (f) {
			f->fs = fs;
			f->plan = *q;
			memset(q, 0, sizeof(*q));
		}
		break;
	}
	pthread_mutex_unlock(&fs->lock);
	if (f && f->plan.action == MIG_FAULT_A_SKEW) {
		mig_realtime_skew_set(f->plan.skew_ms * 1000000LL);
		say(f, "chaos: clock %+lld ms off for the migration of %s",
		    (long long)f->plan.skew_ms, name);
	}
	return f;
}

void agent_fault_end(struct agent_fault *f)
{
	if (!f)
		return;
	if (f->plan.action == MIG_FAULT_A_SKEW)
		mig_realtime_skew_set(0);
	free(f);
}

static void say(struct agent_fault *f, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	if (!f->fs->log)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	f->fs->log(f->fs->log_arg, line);
}

/* SIGSTOP for ms: a grandchild (reparented to init, so nobody must reap it)
 * sends SIGCONT; after fork() it makes only async-signal-safe calls. */
static void stop_for(uint32_t ms)
{
	pid_t self = getpid(), child = fork();

	if (child == 0) {
		if (fork() == 0) {
			struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

			while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
				;
			kill(self, SIGCONT);
		}
		_exit(0);
	}
	if (child > 0) {
		waitpid(child, NULL, 0);
		kill(self, SIGSTOP);
	}
}

int agent_fault_hook(void *arg, const struct mig_fault_point *p, struct mig_error *err)
{
	struct agent_fault *f = arg;
	char where[160];

	if (!mig_fault_plan_matches(&f->plan, p) || atomic_load(&f->fired))
		return 0;
	if (atomic_fetch_add(&f->seen, 1) + 1 != f->plan.nth)
		return 0;
	atomic_store(&f->fired, true);
	mig_fault_point_describe(p, where, sizeof(where));
	switch (f->plan.action) {
	case MIG_FAULT_A_ERROR:
		say(f, "chaos: injecting %s at %s", strerror(f->plan.err), where);
		return mig_error_set(err, -f->plan.err, "chaos: %s injected at %s",
				     strerror(f->plan.err), where);
	case MIG_FAULT_A_KILL:
		say(f, "chaos: SIGKILL at %s", where);
		raise(SIGKILL);
		break;
	case MIG_FAULT_A_STOP:
		say(f, "chaos: SIGSTOP for %u ms at %s", f->plan.ms, where);
		stop_for(f->plan.ms);
		break;
	}
	return 0;
}
