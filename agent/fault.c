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

/* The report kept for VM name (made if new; NULL if the table is full).
 * Under fs->lock. */
static struct mig_fault_report *report_of(struct agent_faults *fs, const char *name)
{
	int free_at = -1;

	for (unsigned i = 0; i < AGENT_FAULT_PLANS; i++) {
		if (fs->reports[i].vm[0] && !strcmp(fs->reports[i].vm, name))
			return &fs->reports[i].rep;
		if (!fs->reports[i].vm[0] && free_at < 0)
			free_at = (int)i;
	}
	if (free_at < 0)
		return NULL;
	str_copy(fs->reports[free_at].vm, sizeof(fs->reports[free_at].vm), name);
	memset(&fs->reports[free_at].rep, 0, sizeof(fs->reports[free_at].rep));
	return &fs->reports[free_at].rep;
}

/* The VM's report into *rep (zero if none), and forgotten.  Under fs->lock. */
static void report_take(struct agent_faults *fs, const char *name, struct mig_fault_report *rep)
{
	memset(rep, 0, sizeof(*rep));
	for (unsigned i = 0; i < AGENT_FAULT_PLANS; i++)
		if (fs->reports[i].vm[0] && !strcmp(fs->reports[i].vm, name)) {
			*rep = fs->reports[i].rep;
			memset(&fs->reports[i], 0, sizeof(fs->reports[i]));
		}
}

void agent_fault_fired(struct agent_fault *f, const char *what)
{
	struct mig_fault_report *rep;

	pthread_mutex_lock(&f->fs->lock);
	rep = report_of(f->fs, f->plan.vm);
	if (rep) {
		rep->fired = 1;
		str_copy(rep->what, sizeof(rep->what), what);
	}
	pthread_mutex_unlock(&f->fs->lock);
}

int agent_faults_arm(struct agent_faults *fs, const struct mig_fault_plan *p,
		     struct mig_fault_report *rep, struct mig_error *err)
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
	report_take(fs, p->vm, rep);
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
			struct mig_fault_report *rep = report_of(fs, name);

			f->fs = fs;
			f->plan = *q;
			memset(q, 0, sizeof(*q));
			if (rep)
				*rep = (struct mig_fault_report){ .taken = 1 };
		}
		break;
	}
	pthread_mutex_unlock(&fs->lock);
	if (f && f->plan.action == MIG_FAULT_A_SKEW) {
		char what[96];

		mig_realtime_skew_set(f->plan.skew_ms * 1000000LL);
		snprintf(what, sizeof(what), "clock %+lld ms off", (long long)f->plan.skew_ms);
		agent_fault_fired(f, what);
		say(f, "chaos: %s for the migration of %s", what, name);
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
	char where[160], what[240];

	if (!mig_fault_plan_matches(&f->plan, p) || atomic_load(&f->fired))
		return 0;
	if (atomic_fetch_add(&f->seen, 1) + 1 != f->plan.nth)
		return 0;
	atomic_store(&f->fired, true);
	mig_fault_point_describe(p, where, sizeof(where));
	switch (f->plan.action) {
	case MIG_FAULT_A_ERROR:
		snprintf(what, sizeof(what), "%s at %s", strerror(f->plan.err), where);
		agent_fault_fired(f, what);
		say(f, "chaos: injecting %s", what);
		return mig_error_set(err, -f->plan.err, "chaos: %s injected at %s",
				     strerror(f->plan.err), where);
	case MIG_FAULT_A_KILL:
		/* its report dies with it: the log line is what remains */
		say(f, "chaos: SIGKILL at %s", where);
		raise(SIGKILL);
		break;
	case MIG_FAULT_A_STOP:
		snprintf(what, sizeof(what), "SIGSTOP for %u ms at %s", f->plan.ms, where);
		agent_fault_fired(f, what);
		say(f, "chaos: %s", what);
		stop_for(f->plan.ms);
		break;
	}
	return 0;
}
