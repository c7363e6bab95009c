// SPDX-License-Identifier: MIT
/* The chaos campaigns' shared parts (chaos/start-proc.h). */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <migrate/agent.h>

#include "start-proc.h"
#include "util.h"

/* start's stdout is one JSON object of a few KiB */
#define START_JSON_MAX (256U << 10)

void chaos_sleep_ms(uint64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int chaos_start_exec(const char *self, const char *const *argv, struct chaos_start_proc *sp)
{
	sp->status = -1;
	sp->t0_ms = mig_now_ms();
	sp->pid = fork();
	if (sp->pid == 0) {
		int o = open(sp->out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		int e = open(sp->err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		int in = open("/dev/null", O_RDONLY | O_CLOEXEC);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (o < 0 || e < 0 || in < 0)
			_exit(126);
		dup2(in, 0);
		dup2(o, 1);
		dup2(e, 2);
		execv(self, (char *const *)argv);
		_exit(127);
	}
	return sp->pid < 0 ? -errno : 0;
}

bool chaos_start_reap(struct chaos_start_proc *sp)
{
	int st;

	if (sp->status != -1 || sp->pid <= 0)
		return true;
	if (waitpid(sp->pid, &st, WNOHANG) != sp->pid)
		return false;
	sp->status = st;
	sp->t1_ms = mig_now_ms();
	return true;
}

int chaos_start_exit(const struct chaos_start_proc *sp)
{
	return WIFEXITED(sp->status) ? WEXITSTATUS(sp->status) : -1;
}

bool chaos_start_signal(struct chaos_start_proc *sp, const struct chaos_fault *f,
			uint64_t *cont_ms)
{
	switch (f->start_signal) {
	case CHAOS_SIG_KILL:
		kill(sp->pid, SIGKILL);
		return true;
	case CHAOS_SIG_STOP:
		kill(sp->pid, SIGSTOP);
		*cont_ms = mig_now_ms() + f->stop_ms;
		break;
	case CHAOS_SIG_INT:
		kill(sp->pid, SIGINT);
		break;
	case CHAOS_SIG_NONE:
		break;
	}
	return false;
}

/* The whole file, NUL-terminated; NULL when empty or unreadable. */
static char *slurp(const char *path, size_t *ret_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buf = fd >= 0 ? malloc(START_JSON_MAX + 1) : NULL;
	size_t len = 0;
	ssize_t k;

	while (buf && len < START_JSON_MAX &&
	       (k = read(fd, buf + len, START_JSON_MAX - len)) > 0)
		len += (size_t)k;
	if (fd >= 0)
		close(fd);
	if (buf && !len) {
		free(buf);
		buf = NULL;
	}
	if (buf)
		buf[len] = '\0';
	*ret_len = len;
	return buf;
}

struct json_object *chaos_start_json(const struct chaos_start_proc *sp, char **ret_buf,
				     char *why, size_t n)
{
	size_t len;
	char *buf = slurp(sp->out, &len);
	struct json_tokener *tok;
	struct json_object *o = NULL;

	*ret_buf = buf;
	if (!buf) {
		snprintf(why, n, "start printed nothing on stdout (--json)");
		return NULL;
	}
	tok = json_tokener_new();
	if (tok)
		o = json_tokener_parse_ex(tok, buf, (int)len);
	if (!o || json_tokener_get_error(tok) != json_tokener_success ||
	    !json_object_is_type(o, json_type_object)) {
		snprintf(why, n, "start's stdout is not one JSON object: %.200s", buf);
		json_object_put(o);
		o = NULL;
	} else if (strspn(buf + json_tokener_get_parse_end(tok), " \t\r\n") !=
		   len - json_tokener_get_parse_end(tok)) {
		snprintf(why, n, "start printed more than one JSON object: %.200s",
			 buf + json_tokener_get_parse_end(tok));
		json_object_put(o);
		o = NULL;
	}
	if (tok)
		json_tokener_free(tok);
	return o;
}

int chaos_table_reply(struct mig_buf *x, const struct mig_wire_layout *l, void *out,
		      unsigned max)
{
	unsigned n = (unsigned)(x->len / l->size);

	if (n > max)
		n = max;
	memcpy(out, x->data, (size_t)n * l->size);
	mig_wire_le(l, out, n);
	mig_buf_free(x);
	return (int)n;
}

void chaos_migs_terminate(struct mig_migration_info *m, int n)
{
	for (int k = 0; k < n; k++) {
		m[k].name[sizeof(m[k].name) - 1] = '\0';
		m[k].peer[sizeof(m[k].peer) - 1] = '\0';
	}
}

int chaos_plan_arm(const char *agent, const char *key, const struct mig_fault_plan *p,
		   struct mig_fault_report *rep, int timeout_ms, struct mig_error *err)
{
	struct mig_fault_plan w = *p;
	struct mig_buf x = { 0 };
	struct mig_client cl;
	int r;

	mig_wire_le(&mig_wl_fault_plan, &w, 1);
	r = mig_client_open(agent, key, &cl, err);
	if (r < 0)
		return r;
	r = mig_client_call_within(&cl, MIG_OP_FAULT_ARM, &w, sizeof(w), &x, timeout_ms, err);
	mig_client_close(&cl);
	if (r >= 0 && rep) {
		memset(rep, 0, sizeof(*rep));
		if (x.len == sizeof(*rep)) {
			memcpy(rep, x.data, sizeof(*rep));
			mig_wire_le(&mig_wl_fault_report, rep, 1);
			rep->what[sizeof(rep->what) - 1] = '\0';
		}
	}
	mig_buf_free(&x);
	return r;
}

void chaos_plans_collect(struct chaos_run *run, const char *const *agents, const char *key,
			 const bool *gone, int timeout_ms)
{
	const struct chaos_fault *f = &run->fault;

	for (int k = 0; k < 2; k++) {
		const struct mig_fault_plan *p = k ? &f->dst_plan : &f->src_plan;
		unsigned who = k ? run->dst : run->src;
		struct mig_fault_plan off = { 0 };
		struct mig_fault_report rep;
		struct mig_error err = { 0 };

		if (!p->action || gone[who])
			continue;
		str_copy(off.vm, sizeof(off.vm), p->vm);
		if (chaos_plan_arm(agents[who], key, &off, &rep, timeout_ms, &err) < 0 ||
		    !rep.fired)
			continue;
		run->fired = true;
		snprintf(run->fired_how, sizeof(run->fired_how), "agent %u: %s", who, rep.what);
	}
}

bool chaos_run_next(const struct chaos_opts *o, uint64_t i, uint64_t t0_ms)
{
	if (o->stop && *o->stop)
		return false;
	if (o->replay)
		return i <= o->replay_run;
	if (o->runs && i >= o->runs)
		return false;
	return !o->duration_ms || mig_now_ms() - t0_ms < o->duration_ms;
}

void chaos_run_done(const struct chaos_opts *o, struct chaos_report *rep,
		    const struct chaos_run *run)
{
	chaos_report_run(rep, o->dir, run);
	if (o->on_run)
		o->on_run(o->arg, run);
}
