// SPDX-License-Identifier: MIT
/* Fault plans: checks, trigger matching and words (include/migrate/fault.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <migrate/engine.h>
#include <migrate/fault.h>
#include <migrate/wire.h>

#include "util.h"

const char *mig_fault_action_name(uint32_t action)
{
	static const char *const names[_MIG_FAULT_A_END] = {
		[MIG_FAULT_A_ERROR] = "error", [MIG_FAULT_A_KILL] = "kill",
		[MIG_FAULT_A_STOP] = "stop", [MIG_FAULT_A_NET] = "net",
		[MIG_FAULT_A_SKEW] = "skew",
	};

	return action < _MIG_FAULT_A_END && names[action] ? names[action] : "?";
}

int mig_fault_plan_check(const struct mig_fault_plan *p, struct mig_error *err)
{
	bool hook = p->action == MIG_FAULT_A_ERROR || p->action == MIG_FAULT_A_KILL ||
		    p->action == MIG_FAULT_A_STOP;

	if (!memchr(p->vm, '\0', sizeof(p->vm)) || !p->vm[0])
		return mig_error_set(err, -EINVAL, "fault plan: no VM name");
	if (p->action >= _MIG_FAULT_A_END)
		return mig_error_set(err, -EINVAL, "fault plan: unknown action %u", p->action);
	if (hook && (p->point < 1 || p->point > MIG_FAULT_PHASE + 1 || p->nth < 1))
		return mig_error_set(err, -EINVAL, "fault plan: a %s needs a point (1-%d) and "
				     "an nth point from 1", mig_fault_action_name(p->action),
				     MIG_FAULT_PHASE + 1);
	if (p->action == MIG_FAULT_A_ERROR && (p->err < 1 || p->err > 4095))
		return mig_error_set(err, -EINVAL, "fault plan: errno %d out of range 1-4095",
				     p->err);
	if (p->action == MIG_FAULT_A_STOP && (p->ms < 1 || p->ms > 600000))
		return mig_error_set(err, -EINVAL, "fault plan: a stop lasts 1 ms to 10 min, "
				     "not %u ms", p->ms);
	if (p->action == MIG_FAULT_A_SKEW &&
	    (p->skew_ms < -86400000LL || p->skew_ms > 86400000LL))
		return mig_error_set(err, -EINVAL, "fault plan: a clock skew of at most a day");
	if (p->action == MIG_FAULT_A_NET && p->net_fault == 0)
		return mig_error_set(err, -EINVAL, "fault plan: a net fault names its toxic");
	return 0;
}

static bool eq_or_any(int32_t want, int have)
{
	return want < 0 || want == have;
}

bool mig_fault_plan_matches(const struct mig_fault_plan *p, const struct mig_fault_point *pt)
{
	if (p->point != (uint32_t)pt->kind + 1)
		return false;
	switch (pt->kind) {
	case MIG_FAULT_DEVICE_STEP:
		return eq_or_any(p->stage, (int)pt->stage) &&
		       (p->dev_class < 0 || (pt->dev && p->dev_class == (int)pt->dev->cls->id)) &&
		       eq_or_any(p->from, pt->from) && eq_or_any(p->to, pt->to);
	case MIG_FAULT_FRAME_SEND:
	case MIG_FAULT_FRAME_RECV:
		return eq_or_any(p->frame_type, pt->frame_type) &&
		       eq_or_any(p->stream, (int)pt->stream);
	case MIG_FAULT_PHASE:
		return eq_or_any(p->from, pt->from) && eq_or_any(p->to, pt->to);
	}
	return false;
}

static const char *state_name(const struct mig_device *d, int st)
{
	return d && st >= 0 && (unsigned)st < d->cls->nr_states ? d->cls->state_names[st] : "?";
}

void mig_fault_point_describe(const struct mig_fault_point *pt, char *out, size_t n)
{
	const char *t;

	switch (pt->kind) {
	case MIG_FAULT_DEVICE_STEP:
		snprintf(out, n, "device step %s %u %s %s->%s", pt->dev ? pt->dev->cls->name : "?",
			 pt->dev ? pt->dev->id : 0, mig_stage_to_string(pt->stage),
			 state_name(pt->dev, pt->from), state_name(pt->dev, pt->to));
		return;
	case MIG_FAULT_FRAME_SEND:
	case MIG_FAULT_FRAME_RECV:
		t = mig_frame_type_to_string(pt->frame_type);
		snprintf(out, n, "%s frame %llu (%s) on stream %u",
			 pt->kind == MIG_FAULT_FRAME_SEND ? "sending" : "receiving",
			 (unsigned long long)pt->seq, t ? t : "?", pt->stream);
		return;
	case MIG_FAULT_PHASE:
		snprintf(out, n, "phase %s->%s", mig_phase_to_string((enum mig_phase)pt->from),
			 mig_phase_to_string((enum mig_phase)pt->to));
		return;
	}
	snprintf(out, n, "an unknown point");
}
