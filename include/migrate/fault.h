/* SPDX-License-Identifier: MIT */
/*
 * Fault plans (docs/chaos.md): what an agent started with --chaos injects
 * into the next migration of a VM, and when.  These are pure functions of
 * the plan and the engines' fault points (struct mig_fault_point); the
 * agent carries out the action.
 */
#ifndef MIGRATE_FAULT_H
#define MIGRATE_FAULT_H

#include <stdbool.h>
#include <stddef.h>

#include <migrate/control.h>
#include <migrate/device.h>
#include <migrate/error.h>

/* Whether the plan is one an agent can carry out: a known action and point,
 * values in range, a NUL-terminated VM name.  -EINVAL with what is wrong. */
int mig_fault_plan_check(const struct mig_fault_plan *p, struct mig_error *err);
/* Whether point pt is one the plan's trigger counts (its nth fires). */
bool mig_fault_plan_matches(const struct mig_fault_plan *p, const struct mig_fault_point *pt);
/* The point in words: "device step vfio 0 SAVE RUNNING->STOP", "phase
 * PRECOPY->STOP_COPY", "sending frame 12 (PAGES) on stream 2". */
void mig_fault_point_describe(const struct mig_fault_point *pt, char *out, size_t n);
/* The action's name: "error", "kill", "stop", "net", "skew" ("?" if none). */
const char *mig_fault_action_name(uint32_t action);

#endif
