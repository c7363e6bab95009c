// SPDX-License-Identifier: MIT
/*
 * The convergence policy: after every PRECOPY round the engine hands over what
 * it measured and gets back one of continue / switch over / force switchover /
 * abort, with the estimate behind it.  A pure function, so the same round
 * always gives the same answer and the whole policy is testable without a VM.
 *
 * The estimate is QEMU's and Cloud Hypervisor's: bytes still to send at stop
 * over the usable wire bandwidth.  Unlike Cloud Hypervisor's estimate it
 * counts device state too (vCPU blobs now, VFIO data later), which is sent
 * inside the downtime window just like the last dirty pages.
 *
 * Order of the checks, and why:
 *   1. converged (nothing dirty, or the rest fits the limit): switching over
 *      is the best outcome, so it wins even on the round that times out;
 *   2. timeout: the operator's deadline, with the operator's action;
 *   3. max_rounds: a safety stop, forcing only when the operator chose force;
 *   4. otherwise another round.
 * Every product and quotient saturates at UINT64_MAX, so absurd inputs give an
 * absurdly large downtime, never a wrapped small one that would switch over.
 */
#include <migrate/policy.h>

#include <errno.h>
#include <string.h>

#include "util.h"

#define CONV_DEFAULT_DOWNTIME_MS 300
#define CONV_DEFAULT_MAX_ROUNDS  64
#define CONV_GUEST_PAGE_BYTES    4096ULL

__extension__ typedef unsigned __int128 conv_u128;

static const char *const conv_action_names[_CONV_ACTION_MAX] = {
	[CONV_CONTINUE] = "continue",
	[CONV_SWITCHOVER] = "switchover",
	[CONV_FORCE_SWITCHOVER] = "force-switchover",
	[CONV_ABORT] = "abort",
	[CONV_POSTCOPY] = "postcopy",
};

static const char *const conv_timeout_action_names[_CONV_TIMEOUT_ACTION_MAX] = {
	[CONV_TIMEOUT_ABORT] = "abort",
	[CONV_TIMEOUT_FORCE] = "force",
};

static const char *const conv_mode_names[_CONV_MODE_MAX] = {
	[CONV_MODE_NONE] = "none",
	[CONV_MODE_THROTTLE] = "throttle",
	[CONV_MODE_POSTCOPY] = "postcopy",
	[CONV_MODE_AUTO] = "auto",
};

static const char *const conv_stall_action_names[_CONV_STALL_ACTION_MAX] = {
	[CONV_STALL_ABORT] = "abort",
	[CONV_STALL_THROTTLE] = "throttle",
	[CONV_STALL_POSTCOPY] = "postcopy",
};

MIG_STRING_TABLE_TO(conv_action, enum conv_action, conv_action_names)
MIG_STRING_TABLE(conv_timeout_action, enum conv_timeout_action, conv_timeout_action_names)
MIG_STRING_TABLE(conv_mode, enum conv_mode, conv_mode_names)
MIG_STRING_TABLE(conv_stall_action, enum conv_stall_action, conv_stall_action_names)

void conv_params_default(struct conv_params *p)
{
	if (!p)
		return;
	*p = (struct conv_params){
		/* QEMU's downtime-limit and Cloud Hypervisor's downtime_ms default. */
		.downtime_limit_ms = CONV_DEFAULT_DOWNTIME_MS,
		.max_bandwidth_bps = 0,
		.timeout_ms = 0,
		/* Giving up keeps the source running: the safe default. */
		.timeout_action = CONV_TIMEOUT_ABORT,
		.max_rounds = CONV_DEFAULT_MAX_ROUNDS,
		.mode = CONV_MODE_NONE,
		.max_throttle_pct = CONV_DEFAULT_MAX_THROTTLE,
	};
}

enum conv_stall_action conv_stall_action_of(const struct conv_params *p)
{
	if (p && p->stall_action > CONV_STALL_INVALID && p->stall_action < _CONV_STALL_ACTION_MAX)
		return p->stall_action;
	/* auto: a migration the throttle did not make converge finishes in
	 * post-copy where the VM can; else throttling can still be raised;
	 * rounds alone cannot do more. */
	if (p && p->mode == CONV_MODE_AUTO && p->postcopy_ok)
		return CONV_STALL_POSTCOPY;
	if (p && (p->mode == CONV_MODE_THROTTLE || p->mode == CONV_MODE_AUTO))
		return CONV_STALL_THROTTLE;
	return CONV_STALL_ABORT;
}

static uint64_t sat_mul(uint64_t a, uint64_t b)
{
	uint64_t v;

	return __builtin_mul_overflow(a, b, &v) ? UINT64_MAX : v;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
	uint64_t v;

	return __builtin_add_overflow(a, b, &v) ? UINT64_MAX : v;
}

/* a * k / b, exact in 128 bits, rounded up if asked, saturated to 64 bits.
 * Callers never pass b == 0; should one, the answer is "unbounded". */
static uint64_t mul_div(uint64_t a, uint64_t k, uint64_t b, bool round_up)
{
	conv_u128 n = (conv_u128)a * k, q;

	if (b == 0)
		return n ? UINT64_MAX : 0;
	q = n / b;
	if (round_up && n % b)
		q++;
	return q > UINT64_MAX ? UINT64_MAX : (uint64_t)q;
}

/* The wire rate the last copy may count on: what the round achieved, capped
 * by the operator's limit (the cap also applies during STOP_COPY).  0 = none
 * known yet. */
static uint64_t usable_bandwidth(const struct conv_params *p, const struct conv_round *r)
{
	uint64_t bw = r->bandwidth_bps;

	if (p->max_bandwidth_bps && (bw == 0 || p->max_bandwidth_bps < bw))
		bw = p->max_bandwidth_bps;
	return bw;
}

void conv_policy_decide(const struct conv_params *p, const struct conv_round *r,
			struct conv_decision *ret)
{
	conv_policy_step(p, r, NULL, ret);
}

static bool throttles(const struct conv_params *p)
{
	return p->mode == CONV_MODE_THROTTLE || p->mode == CONV_MODE_AUTO;
}

static uint32_t max_throttle(const struct conv_params *p)
{
	uint32_t m = p->max_throttle_pct ? p->max_throttle_pct : CONV_DEFAULT_MAX_THROTTLE;

	return m > CONV_DEFAULT_MAX_THROTTLE ? CONV_DEFAULT_MAX_THROTTLE : m;
}

/*
 * The throttle for the next round, after a round that did not shrink what
 * is left: one step up (QEMU's auto-converge), or at once what the rates
 * say is needed, whichever is more.  The guest dirtied `rate` bytes/s
 * running (100 - cur) % of its time, so free it would dirty
 * rate * 100 / (100 - cur); to leave at most CONV_THROTTLE_AIM_PCT of what
 * the link sends in the same time, it may run (aim * bw / free) of it.
 */
static uint32_t throttle_up(const struct conv_params *p, uint32_t cur, uint64_t rate,
			    uint64_t bw)
{
	uint32_t want = cur + (cur ? CONV_THROTTLE_STEP : CONV_THROTTLE_INITIAL), m = max_throttle(p);
	uint64_t free_rate, run_pct;

	if (rate && bw && cur < 100) {
		free_rate = mul_div(rate, 100, 100 - cur, true);
		run_pct = mul_div(bw, CONV_THROTTLE_AIM_PCT, free_rate, false);
		if (run_pct < 100 && 100 - run_pct > want)
			want = (uint32_t)(100 - run_pct);
	}
	return want > m ? m : want;
}

void conv_policy_step(const struct conv_params *p, const struct conv_round *r,
		      struct conv_state *st, struct conv_decision *ret)
{
	struct conv_params defaults;
	uint64_t page_bytes, bw, max_rounds, rounds_done;
	bool known, fits;

	if (!ret)
		return;
	*ret = (struct conv_decision){
		.action = CONV_ABORT,
		.remaining_bytes = UINT64_MAX,
		.expected_downtime_ms = UINT64_MAX,
		.dirty_rate_bps = 0,
		.reason = "no round statistics: giving up, the source keeps running",
	};
	if (!r)
		return;
	if (!p) {
		conv_params_default(&defaults);
		p = &defaults;
	}
	/* the throttle holds until a round changes it */
	if (st)
		ret->throttle_pct = st->throttle_pct;

	page_bytes = r->page_wire_bytes ? r->page_wire_bytes : CONV_GUEST_PAGE_BYTES;
	ret->remaining_bytes = sat_add(sat_mul(r->dirty_pages, page_bytes), r->device_bytes);

	bw = usable_bandwidth(p, r);
	known = bw != 0 || ret->remaining_bytes == 0;
	if (ret->remaining_bytes == 0)
		ret->expected_downtime_ms = 0;
	else if (bw)
		ret->expected_downtime_ms = mul_div(ret->remaining_bytes, 1000, bw, true);

	/* A round shorter than the clock's 1 ms reads as 0 ms: count it as 1 ms,
	 * which gives a lower bound on the rate instead of a division by zero. */
	ret->dirty_rate_bps = mul_div(sat_mul(r->dirty_pages, CONV_GUEST_PAGE_BYTES), 1000,
				      r->round_ms ? r->round_ms : 1, false);

	/* 1. Converged. */
	if (r->dirty_pages == 0) {
		/* More rounds cannot shrink what is left: only device state, which
		 * is sent at stop whatever we do. */
		ret->action = CONV_SWITCHOVER;
		ret->reason = "no dirty pages left: nothing more to copy live";
		return;
	}
	fits = known && ret->expected_downtime_ms <= p->downtime_limit_ms;
	max_rounds = p->max_rounds ? p->max_rounds : CONV_DEFAULT_MAX_ROUNDS;
	rounds_done = (uint64_t)r->round + 1;
	/* Fits, but the round still halved what is left: another short round
	 * buys a shorter blackout, as long as time and rounds allow. */
	if (fits && r->prev_dirty_pages && r->dirty_pages <= r->prev_dirty_pages / 2 &&
	    ret->expected_downtime_ms > CONV_SETTLE_MS && rounds_done + 1 < max_rounds &&
	    !(p->timeout_ms && r->elapsed_ms >= p->timeout_ms)) {
		ret->action = CONV_CONTINUE;
		ret->reason = "fits the downtime limit, but rounds still halve what is left: "
			      "another round shortens the downtime";
		return;
	}
	if (fits) {
		ret->action = CONV_SWITCHOVER;
		ret->reason = r->round == 0 ?
			"the rest after the bulk copy fits the downtime limit" :
			"expected downtime fits the downtime limit";
		return;
	}

	/* 1a. Post-copy once its pre-copy rounds are done: what is left comes
	 * after the destination starts the VM. */
	if (p->mode == CONV_MODE_POSTCOPY &&
	    rounds_done >= (p->postcopy_after ? p->postcopy_after : 1)) {
		ret->action = CONV_POSTCOPY;
		ret->reason = "post-copy: the pre-copy rounds asked for are done; the VM starts on "
			      "the destination and the rest follows";
		return;
	}

	/* 2. Timeout.  Any value other than force counts as abort: giving up
	 * keeps the source running, the safe side of an unknown setting. */
	if (p->timeout_ms && r->elapsed_ms >= p->timeout_ms) {
		if (p->timeout_action == CONV_TIMEOUT_FORCE) {
			ret->action = CONV_FORCE_SWITCHOVER;
			ret->reason = "timeout: switching over beyond the downtime limit (action force)";
		} else {
			ret->action = CONV_ABORT;
			ret->reason = "timeout: did not converge in time, the source keeps running "
				      "(action abort)";
		}
		return;
	}

	/* 3. Safety stop.  Rounds are counted from 0 (the bulk copy), so after
	 * round r, r + 1 rounds are done. */
	if (rounds_done >= max_rounds) {
		if (p->timeout_action == CONV_TIMEOUT_FORCE) {
			ret->action = CONV_FORCE_SWITCHOVER;
			ret->reason = "did not converge in max_rounds rounds: switching over beyond "
				      "the downtime limit (action force)";
		} else {
			ret->action = CONV_ABORT;
			ret->reason = "did not converge in max_rounds rounds: the source keeps running";
		}
		return;
	}

	/* 4. Another round. */
	ret->action = CONV_CONTINUE;
	ret->reason = known ? "expected downtime over the downtime limit: another round" :
			      "no bandwidth measured yet: another round";
	if (!st)
		return;

	/* 4a. A stall: nothing left below its lowest for a while. */
	st->sent = sat_add(st->sent, r->sent_bytes);
	if (!st->best_remaining || ret->remaining_bytes < st->best_remaining) {
		st->best_remaining = ret->remaining_bytes;
		st->best_ms = r->elapsed_ms;
		st->best_sent = st->sent;
	} else if (!st->stalled &&
		   ((p->stall_ms && r->elapsed_ms - st->best_ms >= p->stall_ms) ||
		    (p->stall_bytes && st->sent - st->best_sent >= p->stall_bytes))) {
		st->stalled = true;
		ret->stall = conv_stall_action_of(p);
		switch (ret->stall) {
		case CONV_STALL_THROTTLE:
			if (throttles(p) || p->stall_action == CONV_STALL_THROTTLE) {
				st->throttle_pct = ret->throttle_pct = max_throttle(p);
				ret->reason = "stalled: what is left stopped shrinking; throttling as "
					      "hard as --max-throttle allows";
				return;
			}
			break;
		case CONV_STALL_POSTCOPY:
			ret->action = CONV_POSTCOPY;
			ret->reason = "stalled: what is left stopped shrinking; switching to post-copy";
			return;
		default:
			break;
		}
		ret->stall = CONV_STALL_ABORT;
		ret->action = CONV_ABORT;
		ret->reason = "stalled: what is left stopped shrinking (--stall); the source keeps "
			      "running";
		return;
	}

	/* 4b. The throttle.  It goes on when a round leaves at least
	 * CONV_SHRINK_PCT of the pages it sent, and once on, it rises while a
	 * round leaves more than CONV_THROTTLE_AIM_PCT.  It never falls during
	 * a migration.  Round 0 counts like any other: what it left is a lower
	 * bound on what the guest dirties in its time (a page written twice
	 * counts once), so the next round, shorter in the same proportion,
	 * leaves at least as large a share. */
	if (!throttles(p))
		return;
	{
		uint32_t cur = r->throttle_pct;
		/* exact: what is left against the share of what was sent */
		uint64_t left = sat_mul(r->dirty_pages, 100);
		uint64_t aim = sat_mul(r->prev_dirty_pages, CONV_THROTTLE_AIM_PCT);
		uint64_t half = sat_mul(r->prev_dirty_pages, CONV_SHRINK_PCT);
		bool up = !r->prev_dirty_pages || (cur ? left > aim : left >= half);

		if (!up) {
			st->flat_rounds = 0;
			return;
		}
		st->flat_rounds++;
		st->throttle_pct = throttle_up(p, cur > st->throttle_pct ? cur : st->throttle_pct,
					       ret->dirty_rate_bps, bw);
	}
	if (st->throttle_pct > ret->throttle_pct)
		ret->reason = "rounds do not shrink what is left fast enough: throttling the vCPUs";
	ret->throttle_pct = st->throttle_pct;
}

void conv_vcpu_limits(uint32_t pct, uint32_t max_pct, const uint64_t *dirtied,
		      const uint32_t *was_pct, unsigned n, uint32_t *out_pct)
{
	uint64_t free_[64], budget = 0, left;
	bool done[64] = { false };
	unsigned k = n;

	if (!out_pct)
		return;
	if (max_pct > CONV_DEFAULT_MAX_THROTTLE)
		max_pct = CONV_DEFAULT_MAX_THROTTLE;
	for (unsigned i = 0; i < n; i++)
		out_pct[i] = 0;
	if (!pct || !dirtied || !n || n > 64)
		return;
	if (pct > max_pct)
		pct = max_pct;
	/* What each would dirty free, and the budget: all of them at pct. */
	for (unsigned i = 0; i < n; i++) {
		uint32_t was = was_pct && was_pct[i] < 100 ? was_pct[i] : 0;

		free_[i] = mul_div(dirtied[i], 100, 100 - was, true);
		budget = sat_add(budget, free_[i]);
	}
	left = mul_div(budget, 100 - pct, 100, false);
	/* Water-filling: the lightest first; one under its share runs free
	 * and leaves its unused share to the rest. */
	while (k) {
		unsigned lo = n;
		uint64_t share = left / k;

		for (unsigned i = 0; i < n; i++)
			if (!done[i] && (lo == n || free_[i] < free_[lo]))
				lo = i;
		done[lo] = true;
		k--;
		if (free_[lo] <= share) {
			left -= free_[lo];
			continue;
		}
		/* run share / free of the time, rounded so it never gets more */
		out_pct[lo] = (uint32_t)(100 - mul_div(share, 100, free_[lo], false));
		if (out_pct[lo] > max_pct)
			out_pct[lo] = max_pct;
		left -= share;
	}
}

uint64_t conv_switchover_timeout_ms(const struct conv_params *p, uint64_t expected_downtime_ms,
				    uint64_t ram_bytes, bool verify)
{
	struct conv_params defaults;
	uint64_t t, floor_;

	if (!p) {
		conv_params_default(&defaults);
		p = &defaults;
	}
	t = sat_add(sat_mul(p->downtime_limit_ms, 2), CONV_SWITCHOVER_SLACK_MS);
	/* Hashing runs inside the blackout on both sides; a GiB a second is
	 * slower than either side hashes on any host we know. */
	if (verify)
		t = sat_add(t, mul_div(ram_bytes, CONV_VERIFY_MS_PER_GIB, 1ULL << 30, true));
	/* A forced switchover expects more than the limit: the deadline must
	 * not undo what the operator asked for. */
	floor_ = sat_add(sat_mul(expected_downtime_ms, 2), CONV_SWITCHOVER_SLACK_MS);
	return t > floor_ ? t : floor_;
}
