// SPDX-License-Identifier: MIT
/*
 * The convergence policy: one table row per branch of conv_policy_decide(),
 * each checking the action and the three figures behind it (remaining bytes,
 * expected downtime, dirty rate), computed here by hand.  Overflow rows use
 * inputs whose naive 64-bit product wraps to a small number, so a policy that
 * forgot to saturate would switch over on them.  At the end, the agent's
 * memory budget (policies/memory.c), the other pure policy of a migration's
 * resources.  No KVM needed.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <migrate/policy.h>

#define GB 1000000000ULL   /* 1 GB/s: 1 byte per ns keeps the arithmetic readable */

#define PARAMS(dt, cap, tmo, act, maxr) { .downtime_limit_ms = (dt), .max_bandwidth_bps = (cap), \
	.timeout_ms = (tmo), .timeout_action = (act), .max_rounds = (maxr) }
#define DEF PARAMS(300, 0, 0, CONV_TIMEOUT_ABORT, 64)
#define ROUND(rnd, elapsed, rms, dirty, pwb, bw, dev) { .round = (rnd), .elapsed_ms = (elapsed), \
	.round_ms = (rms), .dirty_pages = (dirty), .page_wire_bytes = (pwb), \
	.bandwidth_bps = (bw), .device_bytes = (dev) }

struct decide_case {
	const char *name;
	struct conv_params p;
	struct conv_round r;
	enum conv_action action;
	uint64_t remaining;
	uint64_t downtime_ms;
	uint64_t rate_bps;
	const char *reason_has;   /* substring the reason must contain, NULL = any */
};

static const struct decide_case cases[] = {
	/* ---- fits / does not fit ---- */
	{ "fits", DEF, ROUND(3, 1000, 100, 10000, 0, GB, 0),
	  CONV_SWITCHOVER, 40960000, 41, 409600000, "fits" },
	{ "exactly at the limit", DEF, ROUND(3, 1000, 1000, 73242, 0, GB, 768),
	  CONV_SWITCHOVER, 300000000, 300, 299999232, "fits" },
	{ "one byte over the limit rounds up", DEF, ROUND(3, 1000, 1000, 73242, 0, GB, 769),
	  CONV_CONTINUE, 300000001, 301, 299999232, "another round" },
	{ "does not fit", DEF, ROUND(3, 1000, 500, 1000000, 0, GB, 0),
	  CONV_CONTINUE, 4096000000, 4096, 8192000000, "another round" },
	{ "round 0 (bulk copy) fits", DEF, ROUND(0, 900, 900, 10000, 0, GB, 0),
	  CONV_SWITCHOVER, 40960000, 41, 45511111, "bulk copy" },
	{ "device bytes count towards the downtime",
	  DEF, ROUND(3, 1000, 100, 10000, 0, GB, 260000000),
	  CONV_CONTINUE, 300960000, 301, 409600000, NULL },
	{ "mean wire bytes per page (compression) lowers the estimate",
	  DEF, ROUND(3, 1000, 1000, 100000, 1000, GB, 0),
	  CONV_SWITCHOVER, 100000000, 100, 409600000, "fits" },
	{ "page_wire_bytes 0 means 4096", DEF, ROUND(3, 1000, 1000, 100000, 0, GB, 0),
	  CONV_CONTINUE, 409600000, 410, 409600000, NULL },

	/* ---- bandwidth: measured, cap, none ---- */
	{ "no cap: measured bandwidth, fits", DEF, ROUND(3, 1000, 100, 50000, 0, GB, 0),
	  CONV_SWITCHOVER, 204800000, 205, 2048000000, NULL },
	{ "cap below measured lowers usable bandwidth and flips the decision",
	  PARAMS(300, GB / 2, 0, CONV_TIMEOUT_ABORT, 64), ROUND(3, 1000, 100, 50000, 0, GB, 0),
	  CONV_CONTINUE, 204800000, 410, 2048000000, NULL },
	{ "cap above measured does not raise it",
	  PARAMS(300, GB, 0, CONV_TIMEOUT_ABORT, 64), ROUND(3, 1000, 100, 50000, 0, GB / 2, 0),
	  CONV_CONTINUE, 204800000, 410, 2048000000, NULL },
	{ "nothing measured: the cap is the bandwidth",
	  PARAMS(300, GB, 0, CONV_TIMEOUT_ABORT, 64), ROUND(3, 1000, 100, 50000, 0, 0, 0),
	  CONV_SWITCHOVER, 204800000, 205, 2048000000, NULL },
	{ "no bandwidth at all: downtime unknown", DEF, ROUND(3, 1000, 1000, 1, 0, 0, 0),
	  CONV_CONTINUE, 4096, UINT64_MAX, 4096, "no bandwidth" },
	{ "unknown downtime never fits, even an unlimited limit",
	  PARAMS(UINT64_MAX, 0, 0, CONV_TIMEOUT_ABORT, 64), ROUND(3, 1000, 1000, 1, 0, 0, 0),
	  CONV_CONTINUE, 4096, UINT64_MAX, 4096, "no bandwidth" },
	{ "no bandwidth at the round limit aborts",
	  DEF, ROUND(63, 1000, 1000, 1, 0, 0, 0),
	  CONV_ABORT, 4096, UINT64_MAX, 4096, "did not converge in" },

	/* ---- zero dirty pages ---- */
	{ "zero dirty pages switch over even when device state exceeds the limit",
	  PARAMS(0, 0, 0, CONV_TIMEOUT_ABORT, 64), ROUND(3, 1000, 1000, 0, 0, GB, 1000000),
	  CONV_SWITCHOVER, 1000000, 1, 0, "no dirty pages" },
	{ "zero dirty pages with no bandwidth", DEF, ROUND(3, 1000, 1000, 0, 0, 0, 5000),
	  CONV_SWITCHOVER, 5000, UINT64_MAX, 0, "no dirty pages" },
	{ "nothing left at all: zero downtime at any bandwidth", DEF, ROUND(0, 0, 0, 0, 0, 0, 0),
	  CONV_SWITCHOVER, 0, 0, 0, "no dirty pages" },
	{ "zero dirty pages after the timeout still switch over",
	  PARAMS(300, 0, 100, CONV_TIMEOUT_ABORT, 64), ROUND(9, 5000, 1000, 0, 0, GB, 0),
	  CONV_SWITCHOVER, 0, 0, 0, "no dirty pages" },

	/* ---- timeout ---- */
	{ "timeout with action abort", PARAMS(300, 0, 10000, CONV_TIMEOUT_ABORT, 64),
	  ROUND(5, 10000, 500, 1000000, 0, GB, 0),
	  CONV_ABORT, 4096000000, 4096, 8192000000, "timeout" },
	{ "timeout with action force", PARAMS(300, 0, 10000, CONV_TIMEOUT_FORCE, 64),
	  ROUND(5, 10000, 500, 1000000, 0, GB, 0),
	  CONV_FORCE_SWITCHOVER, 4096000000, 4096, 8192000000, "timeout" },
	{ "one ms before the timeout", PARAMS(300, 0, 10000, CONV_TIMEOUT_ABORT, 64),
	  ROUND(5, 9999, 500, 1000000, 0, GB, 0),
	  CONV_CONTINUE, 4096000000, 4096, 8192000000, "another round" },
	{ "timed out but it fits: switch over", PARAMS(300, 0, 10000, CONV_TIMEOUT_ABORT, 64),
	  ROUND(5, 20000, 100, 10000, 0, GB, 0),
	  CONV_SWITCHOVER, 40960000, 41, 409600000, "fits" },
	{ "no timeout set: elapsed time does not matter", DEF,
	  ROUND(5, UINT64_MAX, 500, 1000000, 0, GB, 0),
	  CONV_CONTINUE, 4096000000, 4096, 8192000000, "another round" },
	{ "an unknown timeout action counts as abort",
	  PARAMS(300, 0, 10000, (enum conv_timeout_action)7, 64),
	  ROUND(5, 10000, 500, 1000000, 0, GB, 0),
	  CONV_ABORT, 4096000000, 4096, 8192000000, "timeout" },
	{ "timeout is checked before the round limit", PARAMS(300, 0, 10000, CONV_TIMEOUT_ABORT, 64),
	  ROUND(63, 10000, 500, 1000000, 0, GB, 0),
	  CONV_ABORT, 4096000000, 4096, 8192000000, "timeout" },

	/* ---- post-copy: once its pre-copy rounds are done, unless it fits ---- */
	{ "post-copy after the bulk copy",
	  { .downtime_limit_ms = 300, .timeout_action = CONV_TIMEOUT_ABORT,
	    .mode = CONV_MODE_POSTCOPY },
	  ROUND(0, 1000, 500, 1000000, 0, GB, 0),
	  CONV_POSTCOPY, 4096000000, 4096, 8192000000, "post-copy" },

	/* ---- max rounds (rounds count from 0, the bulk copy) ---- */
	{ "64th round with action abort", DEF, ROUND(63, 1000, 500, 1000000, 0, GB, 0),
	  CONV_ABORT, 4096000000, 4096, 8192000000, "did not converge in" },
	{ "63rd round continues", DEF, ROUND(62, 1000, 500, 1000000, 0, GB, 0),
	  CONV_CONTINUE, 4096000000, 4096, 8192000000, "another round" },
	{ "64th round with action force", PARAMS(300, 0, 0, CONV_TIMEOUT_FORCE, 64),
	  ROUND(63, 1000, 500, 1000000, 0, GB, 0),
	  CONV_FORCE_SWITCHOVER, 4096000000, 4096, 8192000000, "did not converge in" },
	{ "max_rounds 0 means 64: round 63 stops", PARAMS(300, 0, 0, CONV_TIMEOUT_ABORT, 0),
	  ROUND(63, 1000, 500, 1000000, 0, GB, 0),
	  CONV_ABORT, 4096000000, 4096, 8192000000, "did not converge in" },
	{ "max_rounds 0 means 64: round 62 continues", PARAMS(300, 0, 0, CONV_TIMEOUT_ABORT, 0),
	  ROUND(62, 1000, 500, 1000000, 0, GB, 0),
	  CONV_CONTINUE, 4096000000, 4096, 8192000000, "another round" },
	{ "max_rounds 1: only the bulk copy", PARAMS(300, 0, 0, CONV_TIMEOUT_ABORT, 1),
	  ROUND(0, 1000, 1000, 1000000, 0, GB, 0),
	  CONV_ABORT, 4096000000, 4096, 4096000000, "did not converge in" },
	{ "round number UINT32_MAX does not wrap", DEF,
	  ROUND(UINT32_MAX, 1000, 500, 1000000, 0, GB, 0),
	  CONV_ABORT, 4096000000, 4096, 8192000000, "did not converge in" },
	{ "round limit does not stop a round that fits", DEF, ROUND(63, 1000, 100, 10000, 0, GB, 0),
	  CONV_SWITCHOVER, 40960000, 41, 409600000, "fits" },

	/* ---- overflow: naive arithmetic would wrap to a small number ---- */
	{ "2^52 pages: pages*4096 = 2^64 saturates, not 0", DEF,
	  ROUND(3, 1000, 1000, 1ULL << 52, 0, GB, 0),
	  CONV_CONTINUE, UINT64_MAX, 18446744073710ULL, UINT64_MAX, NULL },
	{ "2^52+1 pages: pages*4096 saturates, not 4096", DEF,
	  ROUND(3, 1000, 1000, (1ULL << 52) + 1, 0, GB, 0),
	  CONV_CONTINUE, UINT64_MAX, 18446744073710ULL, UINT64_MAX, NULL },
	{ "UINT64_MAX pages at UINT64_MAX B/s: 1000 ms, not less", DEF,
	  ROUND(3, 1000, 1, UINT64_MAX, 0, UINT64_MAX, 0),
	  CONV_CONTINUE, UINT64_MAX, 1000, UINT64_MAX, NULL },
	{ "device bytes UINT64_MAX plus a page saturates, not 4095", DEF,
	  ROUND(3, 1000, 1000, 1, 0, GB, UINT64_MAX),
	  CONV_CONTINUE, UINT64_MAX, 18446744073710ULL, 4096, NULL },
	{ "huge page_wire_bytes saturates", DEF,
	  ROUND(3, 1000, 1000, 2, UINT64_MAX, GB, 0),
	  CONV_CONTINUE, UINT64_MAX, 18446744073710ULL, 8192, NULL },
	{ "remaining*1000 beyond 64 bits is still exact", DEF,
	  ROUND(3, 1000, 1000, 1ULL << 50, 0, 1ULL << 62, 0),
	  CONV_CONTINUE, 1ULL << 62, 1000, 1ULL << 62, NULL },
	{ "1 B/s: downtime saturates", DEF, ROUND(3, 1000, 1000, 1ULL << 52, 0, 1, 0),
	  CONV_CONTINUE, UINT64_MAX, UINT64_MAX, UINT64_MAX, NULL },
	{ "a 0 ms round counts as 1 ms for the dirty rate", DEF, ROUND(3, 1000, 0, 1000, 0, GB, 0),
	  CONV_SWITCHOVER, 4096000, 5, 4096000000, "fits" },
};

static void check_case(const struct decide_case *c)
{
	struct conv_decision d;

	memset(&d, 0xa5, sizeof(d));
	conv_policy_decide(&c->p, &c->r, &d);
	cr_expect_eq(d.action, c->action, "%s: action %s, want %s", c->name,
		     conv_action_to_string(d.action), conv_action_to_string(c->action));
	cr_expect_eq(d.remaining_bytes, c->remaining, "%s: remaining %llu, want %llu", c->name,
		     (unsigned long long)d.remaining_bytes, (unsigned long long)c->remaining);
	cr_expect_eq(d.expected_downtime_ms, c->downtime_ms, "%s: downtime %llu ms, want %llu",
		     c->name, (unsigned long long)d.expected_downtime_ms,
		     (unsigned long long)c->downtime_ms);
	cr_expect_eq(d.dirty_rate_bps, c->rate_bps, "%s: dirty rate %llu, want %llu", c->name,
		     (unsigned long long)d.dirty_rate_bps, (unsigned long long)c->rate_bps);
	cr_assert_not_null(d.reason, "%s: no reason", c->name);
	cr_expect_gt(strlen(d.reason), 0, "%s: empty reason", c->name);
	if (c->reason_has)
		cr_expect_not_null(strstr(d.reason, c->reason_has), "%s: reason \"%s\" lacks \"%s\"",
				   c->name, d.reason, c->reason_has);
}

Test(converge, decision_table)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_case(&cases[i]);
}

/* Every action is reached by some row, so no branch is untested. */
Test(converge, table_reaches_every_action)
{
	for (int a = 0; a < _CONV_ACTION_MAX; a++) {
		bool seen = false;

		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
			seen |= cases[i].action == (enum conv_action)a;
		cr_expect(seen, "no row expects %s", conv_action_to_string((enum conv_action)a));
	}
}

Test(converge, deterministic)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct conv_round r = cases[i].r;
		struct conv_params p = cases[i].p;
		struct conv_decision a, b;

		/* Different garbage in the output: nothing may leak through. */
		memset(&a, 0x00, sizeof(a));
		memset(&b, 0xff, sizeof(b));
		conv_policy_decide(&p, &r, &a);
		conv_policy_decide(&p, &r, &b);
		cr_expect_eq(a.action, b.action, "%s", cases[i].name);
		cr_expect_eq(a.remaining_bytes, b.remaining_bytes, "%s", cases[i].name);
		cr_expect_eq(a.expected_downtime_ms, b.expected_downtime_ms, "%s", cases[i].name);
		cr_expect_eq(a.dirty_rate_bps, b.dirty_rate_bps, "%s", cases[i].name);
		cr_expect_eq(a.reason, b.reason, "%s: reason is not the same static text",
			     cases[i].name);
		/* Pure: the inputs are untouched. */
		cr_expect_eq(memcmp(&r, &cases[i].r, sizeof(r)), 0, "%s: round changed", cases[i].name);
		cr_expect_eq(memcmp(&p, &cases[i].p, sizeof(p)), 0, "%s: params changed",
			     cases[i].name);
	}
}

/* More dirty pages never mean less to send or a shorter downtime, across the
 * whole 64-bit range (a wrap anywhere shows up as a step down). */
Test(converge, estimate_is_monotonic_in_dirty_pages)
{
	static const uint64_t bws[] = { 1, 1000, GB, 1ULL << 62, UINT64_MAX };
	struct conv_params p = DEF;

	for (size_t b = 0; b < sizeof(bws) / sizeof(bws[0]); b++) {
		uint64_t last_rem = 0, last_dt = 0, last_rate = 0;

		for (int k = 0; k <= 64; k++) {
			uint64_t pages = k == 64 ? UINT64_MAX : 1ULL << k;
			struct conv_round r = ROUND(3, 1000, 7, pages, 0, bws[b], 12345);
			struct conv_decision d;

			conv_policy_decide(&p, &r, &d);
			cr_expect_geq(d.remaining_bytes, last_rem, "bw %llu, 2^%d pages",
				      (unsigned long long)bws[b], k);
			cr_expect_geq(d.expected_downtime_ms, last_dt, "bw %llu, 2^%d pages",
				      (unsigned long long)bws[b], k);
			cr_expect_geq(d.dirty_rate_bps, last_rate, "bw %llu, 2^%d pages",
				      (unsigned long long)bws[b], k);
			if (d.expected_downtime_ms > p.downtime_limit_ms)
				cr_expect_neq(d.action, CONV_SWITCHOVER, "bw %llu, 2^%d pages",
					      (unsigned long long)bws[b], k);
			last_rem = d.remaining_bytes;
			last_dt = d.expected_downtime_ms;
			last_rate = d.dirty_rate_bps;
		}
	}
}

Test(converge, defaults)
{
	struct conv_params p;

	memset(&p, 0xa5, sizeof(p));
	conv_params_default(&p);
	cr_expect_eq(p.downtime_limit_ms, 300);
	cr_expect_eq(p.max_bandwidth_bps, 0);
	cr_expect_eq(p.timeout_ms, 0);
	cr_expect_eq(p.timeout_action, CONV_TIMEOUT_ABORT);
	cr_expect_eq(p.max_rounds, 64);
	conv_params_default(NULL);  /* must not crash */
}

/* NULL params mean the defaults; no round statistics means give up safely. */
Test(converge, null_arguments)
{
	struct conv_round r = ROUND(63, 1000, 500, 1000000, 0, GB, 0);
	struct conv_params p;
	struct conv_decision a, b;

	conv_params_default(&p);
	conv_policy_decide(NULL, &r, &a);
	conv_policy_decide(&p, &r, &b);
	cr_expect_eq(a.action, CONV_ABORT);
	cr_expect_eq(a.action, b.action);
	cr_expect_eq(a.expected_downtime_ms, b.expected_downtime_ms);
	cr_expect_eq(a.reason, b.reason);

	memset(&a, 0, sizeof(a));
	conv_policy_decide(&p, NULL, &a);
	cr_expect_eq(a.action, CONV_ABORT);
	cr_expect_eq(a.expected_downtime_ms, UINT64_MAX);
	cr_assert_not_null(a.reason);
	conv_policy_decide(&p, &r, NULL);  /* must not crash */
}

Test(converge, action_names)
{
	static const char *const want[] = {
		[CONV_CONTINUE] = "continue",
		[CONV_SWITCHOVER] = "switchover",
		[CONV_FORCE_SWITCHOVER] = "force-switchover",
		[CONV_ABORT] = "abort",
		[CONV_POSTCOPY] = "postcopy",
	};

	cr_assert_eq(sizeof(want) / sizeof(want[0]), (size_t)_CONV_ACTION_MAX);
	for (int a = 0; a < _CONV_ACTION_MAX; a++) {
		const char *name = conv_action_to_string((enum conv_action)a);

		cr_assert_not_null(name, "action %d has no name", a);
		cr_expect_str_eq(name, want[a]);
		for (int b = 0; b < a; b++)
			cr_expect_str_neq(name, conv_action_to_string((enum conv_action)b));
	}
	cr_expect_null(conv_action_to_string(_CONV_ACTION_MAX));
	cr_expect_null(conv_action_to_string((enum conv_action)(_CONV_ACTION_MAX + 1)));
	cr_expect_null(conv_action_to_string((enum conv_action)-1));
}

Test(converge, timeout_action_names_round_trip)
{
	cr_assert_null(conv_timeout_action_to_string(CONV_TIMEOUT_INVALID), "0 is never an action");
	for (int a = CONV_TIMEOUT_ABORT; a < _CONV_TIMEOUT_ACTION_MAX; a++) {
		const char *name = conv_timeout_action_to_string((enum conv_timeout_action)a);

		cr_assert_not_null(name, "timeout action %d has no name", a);
		cr_expect_gt(strlen(name), 0);
		cr_expect_eq(conv_timeout_action_from_string(name), a, "%s", name);
		for (int b = CONV_TIMEOUT_ABORT; b < a; b++)
			cr_expect_str_neq(name,
					  conv_timeout_action_to_string((enum conv_timeout_action)b));
	}
	cr_expect_str_eq(conv_timeout_action_to_string(CONV_TIMEOUT_ABORT), "abort");
	cr_expect_str_eq(conv_timeout_action_to_string(CONV_TIMEOUT_FORCE), "force");
	cr_expect_null(conv_timeout_action_to_string(_CONV_TIMEOUT_ACTION_MAX));
	cr_expect_null(conv_timeout_action_to_string((enum conv_timeout_action)-1));
}

Test(converge, timeout_action_from_string_rejects)
{
	static const char *const bad[] = {
		"", "Abort", "FORCE", "abort ", " force", "forc", "forced", "cancel", "ignore",
		"force-switchover", "0", "1",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(conv_timeout_action_from_string(bad[i]), -EINVAL, "\"%s\"", bad[i]);
	cr_expect_eq(conv_timeout_action_from_string(NULL), -EINVAL);
}

/* Productive rounds: a round that halved what is left earns another one while
 * the expected downtime is above CONV_SETTLE_MS, even though it fits. */
Test(converge, settles_while_rounds_halve)
{
	struct conv_params p;
	struct conv_decision d;
	struct conv_round r = ROUND(1, 1000, 100, 10000, 0, GB, 0);   /* 41 ms, fits 300 */

	conv_params_default(&p);
	r.prev_dirty_pages = 20000;          /* halved: go on */
	conv_policy_decide(&p, &r, &d);
	cr_assert_eq(d.action, CONV_CONTINUE, "%s", d.reason);
	cr_assert_not_null(strstr(d.reason, "halve"));
	r.prev_dirty_pages = 19999;          /* not quite halved: switch over */
	conv_policy_decide(&p, &r, &d);
	cr_assert_eq(d.action, CONV_SWITCHOVER, "%s", d.reason);
	r.prev_dirty_pages = 0;              /* unknown: the plain rule */
	conv_policy_decide(&p, &r, &d);
	cr_assert_eq(d.action, CONV_SWITCHOVER);
	/* already below the settle floor: switch over */
	r = (struct conv_round)ROUND(1, 1000, 100, 1000, 0, GB, 0);   /* 5 ms */
	r.prev_dirty_pages = 100000;
	conv_policy_decide(&p, &r, &d);
	cr_assert_eq(d.action, CONV_SWITCHOVER, "%llu ms: %s",
		     (unsigned long long)d.expected_downtime_ms, d.reason);
	/* no extra round past the timeout or the last allowed round */
	r = (struct conv_round)ROUND(1, 1000, 100, 10000, 0, GB, 0);
	r.prev_dirty_pages = 100000;
	p.timeout_ms = 1000;
	conv_policy_decide(&p, &r, &d);
	cr_assert_eq(d.action, CONV_SWITCHOVER, "%s", d.reason);
	p.timeout_ms = 0;
	p.max_rounds = 3;
	r.round = 1;                          /* rounds 0, 1 done; one more would be the last */
	conv_policy_decide(&p, &r, &d);
	cr_assert_eq(d.action, CONV_SWITCHOVER, "%s", d.reason);
}

/* The switchover deadline, computed by hand for each term. */
Test(converge, switchover_timeout)
{
	struct conv_params p = DEF;

	/* 2 x 300 ms + 5 s */
	cr_assert_eq(conv_switchover_timeout_ms(&p, 0, 1ULL << 30, false), 5600);
	/* + 1 s per GiB hashed, in proportion, rounded up to the ms */
	cr_assert_eq(conv_switchover_timeout_ms(&p, 0, 1ULL << 30, true), 6600);
	cr_assert_eq(conv_switchover_timeout_ms(&p, 0, (1ULL << 30) + 1, true), 6601);
	/* a forced switchover expecting 20 s gets 2 x 20 s + 5 s */
	cr_assert_eq(conv_switchover_timeout_ms(&p, 20000, 1ULL << 30, false), 45000);
	/* --downtime-limit 10s: 25 s, so a 30 s freeze of the destination is cut short */
	p.downtime_limit_ms = 10000;
	cr_assert_eq(conv_switchover_timeout_ms(&p, 0, 1ULL << 30, false), 25000);
	/* saturates instead of wrapping */
	p.downtime_limit_ms = UINT64_MAX / 2 + 1;
	cr_assert_eq(conv_switchover_timeout_ms(&p, 0, 0, false), UINT64_MAX);
	cr_assert_eq(conv_switchover_timeout_ms(&p, UINT64_MAX, UINT64_MAX, true), UINT64_MAX);
	/* NULL parameters mean the defaults */
	cr_assert_eq(conv_switchover_timeout_ms(NULL, 0, 0, false), 5600);
}

/* The agent's memory budget (policies/memory.c), by hand: 3 % of 2 GiB is
 * 64424508 bytes; the fixed part for 16 streams is 8 MiB + 16 x 256 KiB +
 * 4 bitmaps of 64 KiB = 12845056, which leaves 51579452: 12 streams of
 * 4 MiB (50331648), not 13 (54525952). */
Test(mem_policy, compressing_streams_fit_three_percent_of_guest_ram)
{
	const uint64_t MiB = 1ULL << 20;

	cr_assert_eq(mem_policy_codec_streams(2048 * MiB, 16, 4 * MiB), 12);
	/* twice the RAM: every stream */
	cr_assert_eq(mem_policy_codec_streams(4096 * MiB, 16, 4 * MiB), 16);
	/* what is asked is an upper bound */
	cr_assert_eq(mem_policy_codec_streams(2048 * MiB, 2, 4 * MiB), 2);
	/* a larger codec context: fewer streams (51579452 / 20 MiB = 2) */
	cr_assert_eq(mem_policy_codec_streams(2048 * MiB, 16, 20 * MiB), 2);
	/* below the fixed costs, or one stream's buffers over what is left:
	 * still one, so that --compress compresses */
	cr_assert_eq(mem_policy_codec_streams(64 * MiB, 4, 4 * MiB), 1);
	cr_assert_eq(mem_policy_codec_streams(2048 * MiB, 16, 1024 * MiB), 1);
	cr_assert_eq(mem_policy_codec_streams(2048 * MiB, 0, 4 * MiB), 0);
	/* no overflow at the far end */
	cr_assert_eq(mem_policy_codec_streams(UINT64_MAX, 16, UINT64_MAX), 1);
	cr_assert_eq(mem_policy_codec_streams(UINT64_MAX, 16, 4 * MiB), 16);
}

/* ---- making it converge: the throttle (conv_policy_step) ---- */

/* The case at 1/1000 scale in pages: a 2 GiB guest (524288 pages)
 * whose working set (262144 pages) is all dirty again after each round, at
 * 256 MiB/s (268435456 B/s). */
#define LINK 268435456ULL
static struct conv_round bulk_round(void)
{
	struct conv_round r = ROUND(0, 8000, 8000, 262144, 0, LINK, 0);

	r.prev_dirty_pages = 524288;   /* round 0 sent every page */
	return r;
}

Test(converge, throttle_goes_on_when_a_round_leaves_half)
{
	struct conv_params p;
	struct conv_state st = { 0 };
	struct conv_decision d;
	struct conv_round r = bulk_round();

	conv_params_default(&p);
	p.mode = CONV_MODE_THROTTLE;
	conv_policy_step(&p, &r, &st, &d);
	cr_assert_eq(d.action, CONV_CONTINUE, "%s", d.reason);
	/* the guest dirtied 128 MiB/s in round 0 (a lower bound), half the link:
	 * to leave a quarter it may run half its time */
	cr_assert_eq(d.throttle_pct, 50, "%u: %s", d.throttle_pct, d.reason);
	cr_assert_eq(st.throttle_pct, 50);
	cr_assert_not_null(strstr(d.reason, "throttl"), "%s", d.reason);

	/* a round that left less than half: nothing to do */
	memset(&st, 0, sizeof(st));
	r.dirty_pages = 262143;
	conv_policy_step(&p, &r, &st, &d);
	cr_assert_eq(d.throttle_pct, 0, "%u", d.throttle_pct);

	/* mode none (and the plain decide): never */
	r = bulk_round();
	memset(&st, 0, sizeof(st));
	p.mode = CONV_MODE_NONE;
	conv_policy_step(&p, &r, &st, &d);
	cr_assert_eq(d.throttle_pct, 0);
	p.mode = CONV_MODE_THROTTLE;
	conv_policy_decide(&p, &r, &d);
	cr_assert_eq(d.throttle_pct, 0);
	/* auto throttles too */
	p.mode = CONV_MODE_AUTO;
	conv_policy_step(&p, &r, &st, &d);
	cr_assert_eq(d.throttle_pct, 50);
}

Test(converge, throttle_rises_until_rounds_leave_a_quarter)
{
	struct conv_params p;
	struct conv_state st = { 0 };
	struct conv_decision d;
	struct conv_round r = bulk_round();

	conv_params_default(&p);
	p.mode = CONV_MODE_THROTTLE;
	conv_policy_step(&p, &r, &st, &d);
	cr_assert_eq(d.throttle_pct, 50);
	/* round 1 at 50 %: 4 s for the working set, half of it dirty again,
	 * 64 MiB/s: free the guest would dirty 128 MiB/s, so a quarter of
	 * the link needs it to run a quarter of its time */
	r = (struct conv_round)ROUND(1, 12000, 4000, 131072, 0, LINK, 0);
	r.prev_dirty_pages = 262144;
	r.throttle_pct = st.throttle_pct;
	conv_policy_step(&p, &r, &st, &d);
	cr_assert_eq(d.action, CONV_CONTINUE);
	cr_assert_eq(d.throttle_pct, 75, "%u: %s", d.throttle_pct, d.reason);
	/* round 2 left exactly a quarter: the throttle holds */
	r = (struct conv_round)ROUND(2, 14000, 2000, 32768, 0, LINK, 0);
	r.prev_dirty_pages = 131072;
	r.throttle_pct = st.throttle_pct;
	conv_policy_step(&p, &r, &st, &d);
	cr_assert_eq(d.throttle_pct, 75, "%u", d.throttle_pct);
	/* a round that leaves one page more than a quarter: a step up at least */
	r.dirty_pages = 32769;
	conv_policy_step(&p, &r, &st, &d);
	cr_assert_geq(d.throttle_pct, 85, "%u", d.throttle_pct);
	/* and it never falls while the migration lasts */
	r.dirty_pages = 1;
	r.throttle_pct = st.throttle_pct;
	conv_policy_step(&p, &r, &st, &d);
	cr_assert_geq(d.throttle_pct, 85, "%u", d.throttle_pct);
}

Test(converge, throttle_is_bounded_by_max_throttle)
{
	struct conv_params p;
	struct conv_state st = { 0 };
	struct conv_decision d;
	struct conv_round r = bulk_round();

	conv_params_default(&p);
	p.mode = CONV_MODE_THROTTLE;
	p.max_throttle_pct = 30;
	r.dirty_pages = 524288;        /* everything dirty again: wants 75 % */
	conv_policy_step(&p, &r, &st, &d);
	cr_assert_eq(d.throttle_pct, 30, "%u", d.throttle_pct);
	for (int i = 1; i < 10; i++) {
		r.round = (uint32_t)i;
		r.throttle_pct = st.throttle_pct;
		conv_policy_step(&p, &r, &st, &d);
		cr_assert_eq(d.throttle_pct, 30, "round %d: %u", i, d.throttle_pct);
	}
	/* 0 means the default bound, 99 */
	p.max_throttle_pct = 0;
	memset(&st, 0, sizeof(st));
	for (int i = 0; i < 20; i++) {
		r.round = (uint32_t)i;
		r.throttle_pct = st.throttle_pct;
		conv_policy_step(&p, &r, &st, &d);
	}
	cr_assert_eq(d.throttle_pct, 99, "%u", d.throttle_pct);
}

/* ---- a stall: what is left stops shrinking ---- */

static void stall_run(struct conv_params *p, struct conv_state *st, struct conv_decision *d,
		      int rounds, uint64_t round_ms)
{
	for (int i = 1; i <= rounds; i++) {
		struct conv_round r = ROUND((uint32_t)i, (uint64_t)i * round_ms, round_ms, 262144, 0,
					    LINK, 0);

		r.prev_dirty_pages = 262144;
		r.sent_bytes = 262144ULL * 4096;
		r.throttle_pct = st->throttle_pct;
		conv_policy_step(p, &r, st, d);
		if (d->action != CONV_CONTINUE || d->stall)
			return;
	}
}

Test(converge, a_stall_takes_its_action_once)
{
	struct conv_params p;
	struct conv_state st = { 0 };
	struct conv_decision d;

	conv_params_default(&p);
	/* none: rounds alone cannot do more, so a stall gives up */
	p.stall_ms = 10000;
	stall_run(&p, &st, &d, 20, 4000);
	cr_assert_eq(d.action, CONV_ABORT, "%s", d.reason);
	cr_assert_eq(d.stall, CONV_STALL_ABORT);
	cr_assert_not_null(strstr(d.reason, "stalled"), "%s", d.reason);
	/* found at the first round 10 s past the lowest (round 1 at 4 s) */
	cr_assert_eq(st.best_ms, 4000);

	/* throttle: as hard as allowed, and only once */
	memset(&st, 0, sizeof(st));
	p.mode = CONV_MODE_THROTTLE;
	p.max_throttle_pct = 60;
	stall_run(&p, &st, &d, 20, 4000);
	cr_assert_eq(d.action, CONV_CONTINUE, "%s", d.reason);
	cr_assert_eq(d.stall, CONV_STALL_THROTTLE);
	cr_assert_eq(d.throttle_pct, 60);
	stall_run(&p, &st, &d, 20, 4000);
	cr_assert_eq(d.stall, 0, "a second stall report");

	/* the byte budget, action abort even when throttling */
	memset(&st, 0, sizeof(st));
	p.stall_ms = 0;
	p.stall_bytes = 3 * 262144ULL * 4096;
	p.stall_action = CONV_STALL_ABORT;
	stall_run(&p, &st, &d, 20, 4000);
	cr_assert_eq(d.action, CONV_ABORT, "%s", d.reason);
	cr_assert_eq(d.stall, CONV_STALL_ABORT);
	/* rounds 2, 3, 4 sent 3 working sets past round 1's lowest */
	cr_assert_eq(st.sent, 4 * 262144ULL * 4096);

	/* no bounds: no stall */
	memset(&st, 0, sizeof(st));
	p.stall_bytes = 0;
	stall_run(&p, &st, &d, 40, 4000);
	cr_assert_eq(d.stall, 0);
}

/* A stall with action postcopy switches, as does post-copy's own mode once
 * its pre-copy rounds are done, and auto's stall where the VM can; one
 * that fits never needs it. */
Test(converge, post_copy_switches_after_its_rounds_or_on_a_stall)
{
	struct conv_params p;
	struct conv_state st = { 0 };
	struct conv_decision d;
	struct conv_round r = ROUND(0, 4000, 4000, 262144, 0, LINK, 0);

	conv_params_default(&p);
	p.mode = CONV_MODE_POSTCOPY;
	conv_policy_step(&p, &r, &st, &d);
	cr_assert_eq(d.action, CONV_POSTCOPY, "after the bulk copy (default 1 round): %s",
		     d.reason);
	/* --postcopy-after 3: rounds 0 and 1 go on, round 2 switches */
	p.postcopy_after = 3;
	for (uint32_t i = 0; i < 3; i++) {
		memset(&st, 0, sizeof(st));
		r.round = i;
		conv_policy_step(&p, &r, &st, &d);
		cr_assert_eq(d.action, i < 2 ? CONV_CONTINUE : CONV_POSTCOPY, "round %u: %s", i,
			     d.reason);
	}
	/* what is left fits the limit: a plain switchover, no post-copy */
	r = (struct conv_round)ROUND(0, 4000, 4000, 10, 0, LINK, 0);
	conv_policy_step(&p, &r, &st, &d);
	cr_assert_eq(d.action, CONV_SWITCHOVER, "%s", d.reason);

	/* throttle, stall action postcopy: the stall switches */
	conv_params_default(&p);
	memset(&st, 0, sizeof(st));
	p.mode = CONV_MODE_THROTTLE;
	p.stall_ms = 10000;
	p.stall_action = CONV_STALL_POSTCOPY;
	stall_run(&p, &st, &d, 20, 4000);
	cr_assert_eq(d.action, CONV_POSTCOPY, "%s", d.reason);
	cr_assert_eq(d.stall, CONV_STALL_POSTCOPY);
	cr_assert_not_null(strstr(d.reason, "post-copy"), "%s", d.reason);
	cr_assert_str_eq(conv_action_to_string(CONV_POSTCOPY), "postcopy");

	/* auto: a stall switches to post-copy where the VM can, else throttles
	 * as hard as it may */
	conv_params_default(&p);
	p.mode = CONV_MODE_AUTO;
	p.stall_ms = 10000;
	for (int ok = 0; ok < 2; ok++) {
		memset(&st, 0, sizeof(st));
		p.postcopy_ok = ok;
		stall_run(&p, &st, &d, 20, 4000);
		cr_assert_eq(d.stall, ok ? CONV_STALL_POSTCOPY : CONV_STALL_THROTTLE, "%d", ok);
		cr_assert_eq(d.action, ok ? CONV_POSTCOPY : CONV_CONTINUE, "%d: %s", ok, d.reason);
	}
}

/* ---- per-vCPU dirty limits (ring mode) ---- */

Test(converge, vcpu_limits_slow_only_the_heavy_writers)
{
	uint64_t dirtied[3] = { 1000, 90000, 300000 };
	uint32_t was[3] = { 0, 0, 0 }, out[3];

	/* budget at 50 %: 391000 / 2 = 195500; shares 65166 each; vCPU 0 runs
	 * free and leaves its share: (195500 - 1000) / 2 = 97250 each; vCPU 1
	 * runs free too; vCPU 2 gets the rest, 104500 of 300000: it runs 34 %
	 * of its time (rounded down, so it never gets more) */
	conv_vcpu_limits(50, 99, dirtied, was, 3, out);
	cr_assert_eq(out[0], 0);
	cr_assert_eq(out[1], 0);
	cr_assert_eq(out[2], 66, "%u", out[2]);
	/* what they dirty then is within the budget */
	{
		double sum = 0;

		for (int i = 0; i < 3; i++)
			sum += dirtied[i] * (100 - out[i]) / 100.0;
		cr_assert_leq(sum, 391000 * 0.5, "%f", sum);
	}
	/* a vCPU that was throttled counts at its free rate: 45000 at 50 % is
	 * 90000 free */
	dirtied[1] = 45000;
	was[1] = 50;
	conv_vcpu_limits(50, 99, dirtied, was, 3, out);
	cr_assert_eq(out[1], 0);
	cr_assert_eq(out[2], 66, "%u", out[2]);
	/* equal writers get equal throttles, bounded */
	{
		uint64_t eq[2] = { 5000, 5000 };
		uint32_t o2[2];

		conv_vcpu_limits(80, 99, eq, NULL, 2, o2);
		cr_assert_eq(o2[0], 80);
		cr_assert_eq(o2[1], 80);
		conv_vcpu_limits(80, 70, eq, NULL, 2, o2);
		cr_assert_eq(o2[0], 70);
		conv_vcpu_limits(0, 99, eq, NULL, 2, o2);
		cr_assert_eq(o2[0] | o2[1], 0);
	}
}

Test(converge, mode_and_stall_names)
{
	cr_assert_eq(conv_mode_from_string("none"), CONV_MODE_NONE);
	cr_assert_eq(conv_mode_from_string("throttle"), CONV_MODE_THROTTLE);
	cr_assert_eq(conv_mode_from_string("postcopy"), CONV_MODE_POSTCOPY);
	cr_assert_eq(conv_mode_from_string("auto"), CONV_MODE_AUTO);
	cr_assert_eq(conv_mode_from_string("Auto"), -EINVAL);
	cr_assert_eq(conv_stall_action_from_string("throttle"), CONV_STALL_THROTTLE);
	cr_assert_eq(conv_stall_action_from_string("switch"), -EINVAL);
	cr_assert_str_eq(conv_stall_action_to_string(CONV_STALL_ABORT), "abort");
	cr_assert_str_eq(conv_mode_to_string(CONV_MODE_AUTO), "auto");
}
