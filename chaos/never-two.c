// SPDX-License-Identifier: MIT
/*
 * The never-two check (include/migrate/journal.h): from each agent's
 * journal, the intervals in which at least one vCPU of a VM's copy there
 * ran; then every pair of intervals of one VM on two agents that share
 * time.  Quadratic in the intervals of one VM, which a chaos run counts
 * in tens.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <migrate/journal.h>
#include <migrate/vm.h>

#include "util.h"

struct interval {
	unsigned src;
	const struct mig_journal_rec *start, *stop;   /* stop NULL: open */
	uint64_t t0, t1;                               /* t1 UINT64_MAX: open */
};

static uint64_t rec_ns(const struct mig_journal_rec *r, enum mig_journal_clock clk)
{
	return clk == MIG_JOURNAL_MONOTONIC ? r->monotonic_ns : r->realtime_ns;
}

/* By VM, then time, then seq: each VM's records of one agent in order. */
static int rec_cmp(const void *pa, const void *pb, void *arg)
{
	enum mig_journal_clock sort_clk = *(const enum mig_journal_clock *)arg;
	const struct mig_journal_rec *a = *(const struct mig_journal_rec *const *)pa;
	const struct mig_journal_rec *b = *(const struct mig_journal_rec *const *)pb;
	int c = strncmp(a->vm, b->vm, sizeof(a->vm));
	uint64_t ta = rec_ns(a, sort_clk), tb = rec_ns(b, sort_clk);

	if (c)
		return c;
	if (ta != tb)
		return ta < tb ? -1 : 1;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int iv_push(struct interval **v, size_t *n, size_t *cap, const struct interval *iv)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 16;
		struct interval *p = realloc(*v, nc * sizeof(*p));

		if (!p)
			return -ENOMEM;
		*v = p;
		*cap = nc;
	}
	(*v)[(*n)++] = *iv;
	return 0;
}

/* One agent's intervals, appended to *v: a run of its sorted records of
 * one VM at a time, counting the vCPUs that run. */
static int src_intervals(const struct mig_journal_src *s, unsigned si,
			 enum mig_journal_clock clk, struct interval **v, size_t *n, size_t *cap)
{
	const struct mig_journal_rec **p;
	uint8_t *on = NULL;
	size_t on_cap = 0, nr = 0;
	int r = 0;

	if (!s->n)
		return 0;
	p = malloc(s->n * sizeof(*p));
	if (!p)
		return -ENOMEM;
	/* Only vCPU records: a hook record (a libvirt domain's, vcpu 0) says
	 * nothing of what runs. */
	for (size_t i = 0; i < s->n; i++)
		if (s->recs[i].event != MIG_JOURNAL_HOOK)
			p[nr++] = &s->recs[i];
	qsort_r(p, nr, sizeof(*p), rec_cmp, &clk);
	for (size_t i = 0; i < nr && r == 0;) {
		size_t j = i, running = 0;
		uint32_t top = 0;
		struct interval iv = { .src = si };

		while (j < nr && !strncmp(p[j]->vm, p[i]->vm, sizeof(p[i]->vm))) {
			if (p[j]->vcpu > top)
				top = p[j]->vcpu;
			j++;
		}
		if ((size_t)top + 1 > on_cap) {
			uint8_t *q = realloc(on, (size_t)top + 1);

			if (!q) {
				r = -ENOMEM;
				break;
			}
			on = q;
			on_cap = (size_t)top + 1;
		}
		memset(on, 0, on_cap);
		for (size_t k = i; k < j && r == 0; k++) {
			const struct mig_journal_rec *e = p[k];

			if (e->event == MIG_VCPU_RUN_START && !on[e->vcpu]) {
				on[e->vcpu] = 1;
				if (running++ == 0) {
					iv.start = e;
					iv.t0 = rec_ns(e, clk);
				}
			} else if (e->event == MIG_VCPU_RUN_STOP && on[e->vcpu]) {
				on[e->vcpu] = 0;
				if (--running == 0) {
					iv.stop = e;
					iv.t1 = rec_ns(e, clk);
					r = iv_push(v, n, cap, &iv);
				}
			}
		}
		if (r == 0 && running) {
			iv.stop = NULL;
			iv.t1 = UINT64_MAX;
			r = iv_push(v, n, cap, &iv);
		}
		i = j;
	}
	free(on);
	free(p);
	return r;
}

static void overlap_fill(struct mig_overlap *o, const struct interval *x,
			 const struct interval *y, uint64_t from, uint64_t to)
{
	memset(o, 0, sizeof(*o));
	memcpy(o->vm, x->start->vm, sizeof(o->vm));
	o->vm[sizeof(o->vm) - 1] = '\0';
	o->a = x->src;
	o->b = y->src;
	o->from_ns = from;
	o->to_ns = to;
	o->overlap_ns = to == UINT64_MAX ? UINT64_MAX : to - from;
	o->a_start = *x->start;
	o->b_start = *y->start;
	if (x->stop)
		o->a_stop = *x->stop;
	if (y->stop)
		o->b_stop = *y->stop;
}

int mig_never_two(const struct mig_journal_src *src, unsigned nsrc, enum mig_journal_clock clk,
		  struct mig_overlap *out, size_t max, size_t *ret_n, struct mig_error *err)
{
	struct interval *v = NULL;
	size_t n = 0, cap = 0, found = 0;
	int r = 0;

	for (unsigned s = 0; s < nsrc && r == 0; s++)
		r = src_intervals(&src[s], s, clk, &v, &n, &cap);
	if (r < 0) {
		free(v);
		return mig_error_set(err, r, "out of memory merging %u journals", nsrc);
	}
	for (size_t i = 0; i < n; i++) {
		for (size_t k = i + 1; k < n; k++) {
			const struct interval *x = &v[i], *y = &v[k];
			uint64_t from, to;

			if (x->src == y->src ||
			    strncmp(x->start->vm, y->start->vm, sizeof(x->start->vm)))
				continue;
			if (x->src > y->src) {
				const struct interval *t = x;

				x = y;
				y = t;
			}
			from = x->t0 > y->t0 ? x->t0 : y->t0;
			to = x->t1 < y->t1 ? x->t1 : y->t1;
			/* a stop and a start at one instant share no time */
			if (to <= from)
				continue;
			if (found < max)
				overlap_fill(&out[found], x, y, from, to);
			found++;
		}
	}
	free(v);
	if (ret_n)
		*ret_n = found;
	return found ? 1 : 0;
}
