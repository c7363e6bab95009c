// SPDX-License-Identifier: MIT
/*
 * A chaos campaign on a libvirt domain (docs/chaos.md, "libvirt domains"): the
 * running domain moves back and forth between agents started by hand with
 * --libvirt, one runner-side fault per run (the start process killed,
 * frozen, cancelled or interrupted), and after each run the runner checks
 * what it sees itself: where libvirt has the domain (LV_DOMAIN on every
 * agent), the agents' journals of the domain's lifecycle (never two), and
 * the start's exit code and JSON (the contract).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <migrate/agent.h>
#include <migrate/buf.h>
#include <migrate/chaos-run.h>
#include <migrate/engine.h>
#include <migrate/journal.h>
#include <migrate/libvirt.h>
#include <migrate/vm.h>
#include <migrate/wire-order.h>

#include "start-proc.h"
#include "util.h"

/* A start's bound beyond its fault's own time, the agents' to end their
 * side after it, and a domain's to settle on one host. */
#define LV_RUN_BASE_MS 60000
#define LV_DRAIN_MS 30000
#define LV_SETTLE_MS 15000
#define LV_CALL_MS 20000
#define LV_START_TIMEOUT "20s"
/* runner-side faults act 0-20 ms after the phase is seen, as in lab mode */
#define LV_OBSERVE_WINDOW_MS 20
#define LV_MAX_OVERLAPS 16
/* a killed agent's supervisor starts it again within this */
#define LV_RESTART_MS 30000
/* an agent that killed itself is gone this soon after the start exits */
#define LV_DEATH_WAIT_MS 1000

struct lvc {
	const struct chaos_opts *o;
	struct chaos_report *rep;
	const char *key;          /* NULL: unix:// agents without one */
	unsigned n;
	unsigned holder;          /* the agent the domain runs on */
	char uuid[40];
	uint64_t mask;
	struct mig_client obs;    /* the runner's look at the source during a run */
	bool obs_open;
	unsigned obs_agent;
	/* a connection to each agent of the run, idle: it breaks when the agent dies */
	struct mig_client watch[CHAOS_MAX_AGENTS];
	bool watching[CHAOS_MAX_AGENTS];
	bool died[CHAOS_MAX_AGENTS];
	bool agent_faults;        /* the agents take fault plans (--chaos) */
	char stopped[300];        /* why the campaign cannot go on ("" it can) */
};

static int call(struct lvc *c, unsigned i, uint32_t op, const void *body, size_t len,
		struct mig_buf *extra, struct mig_error *err)
{
	struct mig_client cl;
	int r;

	r = mig_client_open(c->o->agents[i], c->key, &cl, err);
	if (r < 0)
		return r;
	r = mig_client_call_within(&cl, op, body, len, extra, LV_CALL_MS, err);
	mig_client_close(&cl);
	return r;
}

/* Where agent i's libvirt has the domain (MIG_LV_STATE_*), 0 when the
 * agent does not answer; its UUID into uuid when there is one. */
static uint32_t lv_state(struct lvc *c, unsigned i, char *uuid, size_t n)
{
	struct mig_lv_domain_ref ref = { 0 };
	struct mig_lv_domain_info info;
	struct mig_error err = { 0 };
	struct mig_buf x = { 0 };
	uint32_t st = 0;

	str_copy(ref.domain, sizeof(ref.domain), c->o->lv_domain);
	if (call(c, i, MIG_OP_LV_DOMAIN, &ref, sizeof(ref), &x, &err) >= 0 &&
	    x.len == sizeof(info)) {
		memcpy(&info, x.data, sizeof(info));
		mig_wire_le(&mig_wl_lv_domain_info, &info, 1);
		info.uuid[sizeof(info.uuid) - 1] = '\0';
		st = info.state;
		if (uuid && info.uuid[0])
			str_copy(uuid, n, info.uuid);
	}
	mig_buf_free(&x);
	return st;
}

/* The agents that have the domain running; the last of them in *at. */
static unsigned running_on(struct lvc *c, uint32_t *states, unsigned *at)
{
	unsigned k = 0;

	for (unsigned i = 0; i < c->n; i++) {
		states[i] = lv_state(c, i, NULL, 0);
		if (states[i] == MIG_LV_STATE_RUNNING) {
			k++;
			*at = i;
		}
	}
	return k;
}

/* Agent i's migrations (MIG_LIST), names terminated; <0 when it does not
 * answer. */
static int mig_list(struct mig_client *cl, struct mig_migration_info *m, unsigned max)
{
	struct mig_error err = { 0 };
	struct mig_buf x = { 0 };
	int n;

	if (mig_client_call_within(cl, MIG_OP_MIG_LIST, NULL, 0, &x, LV_CALL_MS, &err) < 0) {
		mig_buf_free(&x);
		return -1;
	}
	n = chaos_table_reply(&x, &mig_wl_migration_info, m, max);
	chaos_migs_terminate(m, n);
	return n;
}

/* The source's migration of the domain, if it runs: its phase and id, on
 * one connection kept open for the run (a phase seen within a ms or two). */
static bool src_phase(struct lvc *c, unsigned src, uint32_t *phase, uint8_t id[16])
{
	static struct mig_migration_info m[32];
	struct mig_error err = { 0 };
	int k;

	if (!c->obs_open || c->obs_agent != src) {
		if (c->obs_open)
			mig_client_close(&c->obs);
		c->obs_open = mig_client_open(c->o->agents[src], c->key, &c->obs, &err) == 0;
		c->obs_agent = src;
		if (!c->obs_open)
			return false;
	}
	k = mig_list(&c->obs, m, ARRAY_SIZE(m));
	if (k < 0) {
		mig_client_close(&c->obs);
		c->obs_open = false;
		return false;
	}
	for (int i = 0; i < k; i++)
		if (m[i].side == MIG_SIDE_SOURCE && m[i].state == MIG_MIGRATION_RUNNING &&
		    !strcmp(m[i].name, c->o->lv_domain)) {
			*phase = m[i].phase;
			memcpy(id, m[i].id, 16);
			return true;
		}
	return false;
}

/* No agent runs a migration of the domain any more (within ms). */
static bool drained(struct lvc *c, uint64_t ms)
{
	static struct mig_migration_info m[32];
	uint64_t end = mig_now_ms() + ms;

	for (;;) {
		bool busy = false;

		for (unsigned i = 0; i < c->n && !busy; i++) {
			struct mig_error err = { 0 };
			struct mig_client cl;
			int k;

			if (mig_client_open(c->o->agents[i], c->key, &cl, &err) < 0)
				continue;
			k = mig_list(&cl, m, ARRAY_SIZE(m));
			mig_client_close(&cl);
			for (int x = 0; x < k; x++)
				if (m[x].state == MIG_MIGRATION_RUNNING &&
				    !strcmp(m[x].name, c->o->lv_domain))
					busy = true;
		}
		if (!busy)
			return true;
		if (mig_now_ms() > end)
			return false;
		chaos_sleep_ms(50);
	}
}

/* ---- the agents' deaths ---- */

static void watch_begin(struct lvc *c, unsigned i)
{
	struct mig_error err = { 0 };

	c->died[i] = false;
	c->watching[i] = mig_client_open(c->o->agents[i], c->key, &c->watch[i], &err) == 0;
}

/* Whether agent i died since watch_begin: its idle connection ended. */
static bool watch_broke(struct lvc *c, unsigned i)
{
	struct pollfd p = { .fd = c->watch[i].conn.fd, .events = POLLIN | POLLRDHUP };

	if (c->watching[i] && !c->died[i] && poll(&p, 1, 0) > 0)
		c->died[i] = true;
	return c->died[i];
}

static void watch_end(struct lvc *c, unsigned i)
{
	if (c->watching[i])
		mig_client_close(&c->watch[i]);
	c->watching[i] = false;
}

/* A killed agent answers again (its supervisor restarted it) within
 * LV_RESTART_MS; false when it does not. */
static bool came_back(struct lvc *c, unsigned i)
{
	uint64_t end = mig_now_ms() + LV_RESTART_MS;

	do {
		struct mig_error err = { 0 };
		struct mig_client cl;

		if (mig_client_open(c->o->agents[i], c->key, &cl, &err) == 0) {
			mig_client_close(&cl);
			return true;
		}
		chaos_sleep_ms(100);
	} while (mig_now_ms() < end);
	return false;
}

/* ---- never two, from the agents' journals ---- */

/*
 * Agent i's lifecycle records of the domain, as the check takes them.
 * libvirt announces an incoming domain with STARTED (detail migrated) when
 * QEMU is made, paused, waiting for the stream; its vCPUs first run at
 * RESUMED.  So on a host whose first record of a migration is a start,
 * that start is the incoming domain being made and does not count.  (A
 * source's domain runs when its migration begins: its first record of the
 * migration is the stop for the switchover, or a resume after one.)
 */
static int domain_recs(struct lvc *c, unsigned i, struct mig_buf *out, struct mig_error *err)
{
	struct mig_journal_reply info;
	struct mig_buf recs = { 0 }, seen = { 0 };
	struct mig_client cl;
	int r;

	r = mig_client_open(c->o->agents[i], c->key, &cl, err);
	if (r < 0)
		return r;
	r = mig_client_journal(&cl, 0, &recs, &info, err);
	mig_client_close(&cl);
	for (size_t k = 0; r >= 0 && k < recs.len / sizeof(struct mig_journal_rec); k++) {
		static const uint8_t zero[16];
		struct mig_journal_rec rec;
		bool first = false;

		memcpy(&rec, recs.data + k * sizeof(rec), sizeof(rec));
		if (strcmp(rec.vm, c->uuid) || rec.event == MIG_JOURNAL_HOOK)
			continue;
		if (memcmp(rec.mig_id, zero, 16)) {
			size_t x;

			for (x = 0; x < seen.len && memcmp(seen.data + x, rec.mig_id, 16); x += 16)
				;
			first = x == seen.len;
			if (first && mig_buf_append(&seen, rec.mig_id, 16) < 0)
				r = -ENOMEM;
		}
		if (first && rec.event == MIG_VCPU_RUN_START)
			continue;
		if (r >= 0)
			r = mig_buf_append(out, &rec, sizeof(rec));
	}
	if (r == -ENOMEM)
		mig_error_set(err, r, "out of memory");
	mig_buf_free(&seen);
	mig_buf_free(&recs);
	return r;
}

/* Overlaps that ended since t0_ns (realtime): a violation beyond the
 * tolerance, counted within it. */
static void check_never_two(struct lvc *c, struct chaos_run *run, uint64_t t0_ns)
{
	struct mig_journal_src src[CHAOS_MAX_AGENTS];
	struct mig_buf bufs[CHAOS_MAX_AGENTS];
	struct mig_overlap ov[LV_MAX_OVERLAPS];
	struct mig_error err = { 0 };
	size_t nov = 0;
	int r = 0;

	memset(bufs, 0, sizeof(bufs));
	for (unsigned i = 0; i < c->n && r >= 0; i++) {
		r = domain_recs(c, i, &bufs[i], &err);
		src[i] = (struct mig_journal_src){ c->o->agents[i], (const void *)bufs[i].data,
						   bufs[i].len / sizeof(struct mig_journal_rec) };
	}
	if (r >= 0)
		r = mig_never_two(src, c->n, MIG_JOURNAL_REALTIME, ov, ARRAY_SIZE(ov), &nov, &err);
	if (r < 0)
		chaos_violation(run, CHAOS_INV_NEVER_TWO, "the journals could not be checked: %s",
				err.msg);
	for (size_t k = 0; r >= 0 && k < nov && k < ARRAY_SIZE(ov); k++) {
		const struct mig_overlap *v = &ov[k];

		if (v->to_ns != UINT64_MAX && v->to_ns < t0_ns)
			continue;         /* an earlier run's */
		if (v->overlap_ns <= CHAOS_LV_OVERLAP_TOLERANCE_NS) {
			c->rep->lv_overlaps_tolerated++;
			if (v->overlap_ns > c->rep->lv_overlap_max_ns)
				c->rep->lv_overlap_max_ns = v->overlap_ns;
			continue;
		}
		chaos_violation(run, CHAOS_INV_NEVER_TWO, "domain %s ran on %s and on %s at once "
				"for %.3f ms by their journals (beyond the %llu ms allowed for "
				"libvirt's event delivery)", c->o->lv_domain, src[v->a].agent,
				src[v->b].agent, v->overlap_ns == UINT64_MAX ? -1.0 :
				v->overlap_ns / 1e6,
				(unsigned long long)(CHAOS_LV_OVERLAP_TOLERANCE_NS / 1000000));
	}
	if (r >= 0 && nov > ARRAY_SIZE(ov))
		chaos_violation(run, CHAOS_INV_NEVER_TWO, "the journals show %zu overlaps of the "
				"domain's runs on two hosts", nov);
	for (unsigned i = 0; i < c->n; i++)
		mig_buf_free(&bufs[i]);
}

/* ---- the start command ---- */

static int start_spawn(struct lvc *c, struct chaos_start_proc *sp, unsigned src, unsigned dst)
{
	const struct chaos_opts *o = c->o;
	const char *argv[96];
	char vm[MIG_LV_NAME_MAX + 16];
	bool timeout = false;
	unsigned n = 0;

	snprintf(sp->out, sizeof(sp->out), "%s/cur/start.json", o->dir);
	snprintf(sp->err, sizeof(sp->err), "%s/cur/start.err", o->dir);
	snprintf(vm, sizeof(vm), "libvirt:%s", o->lv_domain);
	argv[n++] = "migratectl";
	argv[n++] = "start";
	argv[n++] = o->agents[src];
	argv[n++] = o->agents[dst];
	argv[n++] = "--vm";
	argv[n++] = vm;
	argv[n++] = "--json";
	if (c->key) {
		argv[n++] = "--key-file";
		argv[n++] = c->key;
	}
	for (unsigned k = 0; k < o->nr_start_args && n < ARRAY_SIZE(argv) - 4; k++) {
		argv[n++] = o->start_args[k];
		if (!strncmp(o->start_args[k], "--timeout", 9) && strncmp(o->start_args[k],
									 "--timeout-", 10))
			timeout = true;
	}
	/* a migration that cannot converge ends by the product's own rule */
	if (!timeout) {
		argv[n++] = "--timeout";
		argv[n++] = LV_START_TIMEOUT;
	}
	argv[n] = NULL;
	return chaos_start_exec(o->self, argv, sp);
}

static void get_str(struct json_object *o, const char *key, char *out, size_t n)
{
	struct json_object *v;

	if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
		str_copy(out, n, json_object_get_string(v));
}

/* start's stdout: exactly one JSON object with result, owner and the
 * libvirt object; 0, or -1 with why. */
static int start_json(const struct chaos_start_proc *sp, struct chaos_lv_json *j, char *why, size_t n)
{
	char *buf;
	struct json_object *o = chaos_start_json(sp, &buf, why, n), *lv;
	int r = -1;

	memset(j, 0, sizeof(*j));
	if (!o)
		goto out;
	get_str(o, "id", j->id, sizeof(j->id));
	get_str(o, "result", j->result, sizeof(j->result));
	get_str(o, "owner", j->owner, sizeof(j->owner));
	get_str(o, "error", j->error, sizeof(j->error));
	if (!j->result[0] || !j->owner[0]) {
		snprintf(why, n, "start's JSON has no result or owner: %.200s", buf);
		goto out;
	}
	/* null states: that host's agent did not answer */
	str_copy(j->src_state, sizeof(j->src_state), "null");
	str_copy(j->dst_state, sizeof(j->dst_state), "null");
	if (json_object_object_get_ex(o, "libvirt", &lv) &&
	    json_object_is_type(lv, json_type_object)) {
		get_str(lv, "source_state", j->src_state, sizeof(j->src_state));
		get_str(lv, "destination_state", j->dst_state, sizeof(j->dst_state));
	} else if (strcmp(j->owner, "source") || strcmp(j->result, "failed")) {
		/* only a start that never began has no libvirt object */
		snprintf(why, n, "start's JSON has no libvirt object: %.200s", buf);
		goto out;
	}
	r = 0;
out:
	json_object_put(o);
	free(buf);
	return r;
}

/* ---- one run ---- */

struct lv_actor {
	bool seen, acted, killed;
	uint64_t at_ms, cont_ms;
	uint8_t id[16];
};

static void act(struct lvc *c, struct chaos_run *run, struct chaos_start_proc *sp, struct lv_actor *ac)
{
	const struct chaos_fault *f = &run->fault;
	struct mig_error err = { 0 };

	ac->acted = true;
	run->fired = true;
	ac->killed = chaos_start_signal(sp, f, &ac->cont_ms);
	if (f->cancel_op) {
		struct mig_cancel req = { 0 };

		memcpy(req.id, ac->id, 16);
		mig_wire_le(&mig_wl_cancel, &req, 1);
		if (call(c, run->src, MIG_OP_MIG_CANCEL, &req, sizeof(req), NULL, &err) < 0) {
			/* the migration ended first: the run goes on without its fault */
			run->fired = false;
			snprintf(run->fired_how, sizeof(run->fired_how), "not injected: %.200s",
				 err.msg);
			return;
		}
	}
	snprintf(run->fired_how, sizeof(run->fired_how), "runner: %s", f->trigger);
}

/* Watches the source until the start exits, acting once its migration is
 * seen in the fault's phase.  false when the start outlived its bound. */
static bool observe(struct lvc *c, struct chaos_run *run, struct chaos_start_proc *sp,
		    struct lv_actor *ac)
{
	const struct chaos_fault *f = &run->fault;
	uint64_t limit = sp->t0_ms + LV_RUN_BASE_MS + 3ULL * f->stop_ms;
	uint32_t phase;

	while (!chaos_start_reap(sp)) {
		if (ac->cont_ms && mig_now_ms() >= ac->cont_ms) {
			kill(sp->pid, SIGCONT);
			ac->cont_ms = 0;
		}
		if (mig_now_ms() > limit)
			return false;
		if (ac->acted || (!f->start_signal && !f->cancel_op)) {
			chaos_sleep_ms(5);
			continue;
		}
		if (!ac->seen) {
			if (!src_phase(c, run->src, &phase, ac->id) || phase < (uint32_t)f->phase) {
				chaos_sleep_ms(1);
				continue;
			}
			ac->seen = true;
			ac->at_ms = mig_now_ms() + f->delay_permille * LV_OBSERVE_WINDOW_MS / 1000;
		}
		if (mig_now_ms() >= ac->at_ms)
			act(c, run, sp, ac);
		else
			chaos_sleep_ms(1);
	}
	if (ac->cont_ms)
		kill(sp->pid, SIGCONT);
	return true;
}

/* Where the domain is once it settled: polled until it runs on exactly one
 * host and no host has it paused or in between, within LV_SETTLE_MS, then
 * again after the settle time, which is the answer. */
static void settled(struct lvc *c, unsigned src, unsigned dst, struct chaos_lv_seen *seen)
{
	uint64_t end = mig_now_ms() + LV_SETTLE_MS;
	uint32_t st[CHAOS_MAX_AGENTS];
	unsigned at;

	for (;;) {
		unsigned k = running_on(c, st, &at);
		bool quiet = true;

		for (unsigned i = 0; i < c->n; i++)
			if (st[i] != MIG_LV_STATE_RUNNING && st[i] != MIG_LV_STATE_ABSENT &&
			    st[i] != MIG_LV_STATE_SHUTOFF)
				quiet = false;
		if ((k == 1 && quiet) || mig_now_ms() > end)
			break;
		chaos_sleep_ms(100);
	}
	chaos_sleep_ms(c->o->settle_ms);
	running_on(c, st, &at);
	seen->src = st[src];
	seen->dst = st[dst];
}

static void save_violation(struct lvc *c, struct chaos_run *run)
{
	char path[PATH_MAX + 64], from[PATH_MAX + 64], what[2048];
	static const char *const files[] = { "start.json", "start.err" };
	FILE *f;

	snprintf(path, sizeof(path), "%s/violations", c->o->dir);
	mkdir(path, 0755);
	snprintf(run->dir, sizeof(run->dir), "%s/violations/run-%" PRIu64, c->o->dir, run->index);
	mkdir(run->dir, 0755);
	for (unsigned k = 0; k < ARRAY_SIZE(files); k++) {
		snprintf(from, sizeof(from), "%s/cur/%s", c->o->dir, files[k]);
		snprintf(path, sizeof(path), "%s/%s", run->dir, files[k]);
		rename(from, path);
	}
	snprintf(what, sizeof(what), "run %" PRIu64 " (seed %" PRIu64 "): fault %s, aimed at %s: "
		 "%s\ninvariant %s: %s\nreplay: %s\n", run->index, c->o->seed,
		 chaos_kinds[run->fault.kind].name, mig_phase_to_string(run->fault.phase),
		 run->fault.trigger, chaos_invariant_name(run->invariant), run->detail,
		 run->replay);
	snprintf(path, sizeof(path), "%s/what.txt", run->dir);
	f = fopen(path, "w");
	if (f) {
		fputs(what, f);
		fclose(f);
	}
}

static void replay_command(struct lvc *c, struct chaos_run *run)
{
	const struct chaos_opts *o = c->o;
	size_t n = 0;

	n += (size_t)snprintf(run->replay, sizeof(run->replay), "migratectl chaos ");
	if (c->key)
		n += (size_t)snprintf(run->replay + n, sizeof(run->replay) - n, "--key-file %s ",
				      c->key);
	n += (size_t)snprintf(run->replay + n, sizeof(run->replay) - n, "--agents ");
	for (unsigned i = 0; i < c->n && n < sizeof(run->replay); i++)
		n += (size_t)snprintf(run->replay + n, sizeof(run->replay) - n, "%s%s",
				      i ? "," : "", o->agents[i]);
	if (n < sizeof(run->replay))
		snprintf(run->replay + n, sizeof(run->replay) - n, " --vm libvirt:%s --seed %"
			 PRIu64 " --faults %s --replay %" PRIu64, o->lv_domain, o->seed,
			 o->faults ? o->faults : "all", run->index);
}

/* The run's plans armed on its agents; false (a violation noted) when an
 * agent refused one. */
static bool plans_arm(struct lvc *c, struct chaos_run *run)
{
	const struct chaos_fault *f = &run->fault;
	struct mig_error err = { 0 };

	if ((f->src_plan.action && chaos_plan_arm(c->o->agents[run->src], c->key, &f->src_plan,
						  NULL, LV_CALL_MS, &err) < 0) ||
	    (f->dst_plan.action && chaos_plan_arm(c->o->agents[run->dst], c->key, &f->dst_plan,
						  NULL, LV_CALL_MS, &err) < 0)) {
		chaos_violation(run, CHAOS_INV_CONTRACT, "an agent refused the fault plan: %s",
				err.msg);
		return false;
	}
	return true;
}

/* Every plan of the run disarmed, and each live agent's word on it; a
 * killed agent's word is its death. */
static void plans_collect(struct lvc *c, struct chaos_run *run)
{
	const struct chaos_fault *f = &run->fault;

	chaos_plans_collect(run, c->o->agents, c->key, c->died, LV_CALL_MS);
	for (int k = 0; k < 2; k++) {
		unsigned who = k ? run->dst : run->src;

		if (c->died[who] && (k ? f->kills_dst : f->kills_src)) {
			run->fired = true;
			snprintf(run->fired_how, sizeof(run->fired_how), "agent %u: SIGKILL at %s",
				 who, f->trigger);
		}
	}
}

/* After the start: the agents that died (only the fault's may), back
 * before the checks that ask them; c->stopped when one does not come. */
static void deaths(struct lvc *c, struct chaos_run *run)
{
	const struct chaos_fault *f = &run->fault;

	for (unsigned i = 0; i < c->n; i++) {
		bool expected = (i == run->src && f->kills_src) || (i == run->dst && f->kills_dst);
		uint64_t end = mig_now_ms() + (expected ? LV_DEATH_WAIT_MS : 0);

		/* the start may see the stream break before the agent is gone */
		while (!watch_broke(c, i) && mig_now_ms() < end)
			chaos_sleep_ms(5);
		if (!watch_broke(c, i))
			continue;
		if (!expected)
			chaos_violation(run, CHAOS_INV_NO_LEAKS, "agent %u (%s) died, and the fault "
					"did not kill it", i, c->o->agents[i]);
		if (!came_back(c, i))
			snprintf(c->stopped, sizeof(c->stopped), "agent %u (%s) died in run %" PRIu64
				 " and did not come back within %u s: kill faults need agents that a "
				 "supervisor restarts (systemd's Restart=), or leave kill-src and "
				 "kill-dst out of --faults", i, c->o->agents[i], run->index,
				 LV_RESTART_MS / 1000);
	}
}

static void run_one(struct lvc *c, uint64_t index, struct chaos_run *run)
{
	struct chaos_start_proc sp;
	struct lv_actor ac = { 0 };
	struct chaos_lv_json j = { 0 };
	struct chaos_lv_seen seen = { 0 };
	uint64_t t0_ns = mig_clock_ns(CLOCK_REALTIME);
	char why[512] = "";
	bool json_ok;

	memset(run, 0, sizeof(*run));
	run->index = index;
	run->src = c->holder;
	run->dst = (c->holder + 1) % c->n;
	str_copy(run->vm, sizeof(run->vm), c->o->lv_domain);
	chaos_lv_fault_make(c->o->seed, index, c->mask, c->o->lv_domain, &run->fault);
	replay_command(c, run);
	for (unsigned i = 0; i < c->n; i++)
		watch_begin(c, i);
	if (!plans_arm(c, run))
		goto out;
	if (start_spawn(c, &sp, run->src, run->dst) < 0) {
		chaos_violation(run, CHAOS_INV_BOUNDED, "start could not be run: %s",
				strerror(errno));
		goto out;
	}
	if (!observe(c, run, &sp, &ac)) {
		kill(sp.pid, SIGCONT);
		kill(sp.pid, SIGKILL);
		waitpid(sp.pid, NULL, 0);
		sp.t1_ms = mig_now_ms();
		chaos_violation(run, CHAOS_INV_BOUNDED, "start did not exit within %llu ms",
				LV_RUN_BASE_MS + 3ULL * run->fault.stop_ms);
	}
	run->ms = sp.t1_ms - sp.t0_ms;
	if (!drained(c, LV_DRAIN_MS))
		chaos_violation(run, CHAOS_INV_BOUNDED, "a migration of the domain still ran on an "
				"agent %u ms after start exited", LV_DRAIN_MS);
	deaths(c, run);
	plans_collect(c, run);
	settled(c, run->src, run->dst, &seen);
	check_never_two(c, run, t0_ns);
	json_ok = ac.killed || start_json(&sp, &j, why, sizeof(why)) == 0;
	chaos_lv_judge(run, WIFEXITED(sp.status) ? WEXITSTATUS(sp.status) : -1, ac.killed,
		       json_ok, why, &j, &seen);
	if (!run->invariant && !run->outcome)
		run->outcome = CHAOS_OUT_OPERATOR;
	/* QEMU's fault, not one of the product's: no later run can move it */
	if (strstr(j.error, MIG_LV_STUCK_MARK))
		snprintf(c->stopped, sizeof(c->stopped), "after run %" PRIu64 ", %s",
			 run->index, MIG_LV_STUCK);
out:
	for (unsigned i = 0; i < c->n; i++)
		watch_end(c, i);
	if (run->invariant)
		save_violation(c, run);
}

/* Whether every agent takes fault plans (started with --chaos): each is
 * asked to disarm the domain's. */
static bool agents_take_faults(struct lvc *c)
{
	struct mig_fault_plan off = { 0 };

	str_copy(off.vm, sizeof(off.vm), c->o->lv_domain);
	for (unsigned i = 0; i < c->n; i++) {
		struct mig_error err = { 0 };

		if (chaos_plan_arm(c->o->agents[i], c->key, &off, NULL, LV_CALL_MS, &err) < 0)
			return false;
	}
	return true;
}

/* The domain's host: the one agent on which it runs. */
static int find_holder(struct lvc *c, struct mig_error *err)
{
	uint32_t st[CHAOS_MAX_AGENTS];
	unsigned at = 0, k = running_on(c, st, &at);

	if (k != 1)
		return mig_error_set(err, -ENOENT, "libvirt domain %s runs on %u of the agents' "
				     "hosts; it must run on exactly one", c->o->lv_domain, k);
	c->holder = at;
	return 0;
}

int chaos_lv_campaign(const struct chaos_opts *o, struct chaos_report *rep,
		      struct mig_error *err)
{
	static struct lvc c;
	uint64_t t0 = mig_now_ms();
	char cur[PATH_MAX];
	struct chaos_run run;
	int r;

	memset(&c, 0, sizeof(c));
	memset(rep, 0, sizeof(*rep));
	c.o = o;
	c.rep = rep;
	c.n = o->nr_agents;
	c.key = o->key_file;
	rep->seed = o->seed;
	signal(SIGPIPE, SIG_IGN);
	c.agent_faults = agents_take_faults(&c);
	c.mask = chaos_lv_mask(o->mask, c.agent_faults);
	if (!c.mask)
		return mig_error_set(err, -EINVAL, "chaos: none of the faults given applies to a "
				     "libvirt domain%s", c.agent_faults ? "" : " whose agents take no "
				     "faults (the runner's own are kill-start, stop-start and cancel; "
				     "start the agents with --chaos for the others)");
	snprintf(cur, sizeof(cur), "%s/cur", o->dir);
	if ((mkdir(o->dir, 0755) < 0 && errno != EEXIST) || (mkdir(cur, 0755) < 0 &&
							     errno != EEXIST))
		return mig_error_set(err, -errno, "chaos: %s: %s", cur, strerror(errno));
	r = find_holder(&c, err);
	if (r < 0)
		return r;
	if (!lv_state(&c, c.holder, c.uuid, sizeof(c.uuid)) || !c.uuid[0])
		return mig_error_set(err, -EIO, "chaos: libvirt domain %s: its agent gives no UUID",
				     o->lv_domain);
	snprintf(rep->cluster, sizeof(rep->cluster), "%u agents given (--agents), libvirt domain "
		 "%s (%s)", c.n, o->lv_domain, c.uuid);
	if (c.agent_faults)
		snprintf(rep->network, sizeof(rep->network), "a relay in front of the destination "
			 "agent's tunnel, one toxic per network fault");
	else
		snprintf(rep->network, sizeof(rep->network), "none: the agents take no faults (not "
			 "started with --chaos), so the runner's own on the start process only");
	for (uint64_t i = o->replay ? o->replay_run : 0; chaos_run_next(o, i, t0); i++) {
		run_one(&c, i, &run);
		chaos_run_done(o, rep, &run);
		if (c.stopped[0]) {
			snprintf(rep->cluster + strlen(rep->cluster), sizeof(rep->cluster) -
				 strlen(rep->cluster), "; stopped: %.200s", c.stopped);
			break;
		}
		if (find_holder(&c, err) < 0) {
			/* the next run has no domain to move: an operator must look */
			snprintf(rep->cluster + strlen(rep->cluster), sizeof(rep->cluster) -
				 strlen(rep->cluster), "; stopped after run %" PRIu64 ": %.120s", i,
				 err->msg);
			memset(err, 0, sizeof(*err));
			break;
		}
	}
	if (c.obs_open)
		mig_client_close(&c.obs);
	rep->elapsed_ms = mig_now_ms() - t0;
	return 0;
}
