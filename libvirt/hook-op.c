// SPDX-License-Identifier: MIT
/* The qemu hook's operations by name (include/migrate/control.h). */
#include <migrate/control.h>

#include "util.h"

static const char *const hook_op_names[_MIG_HOOK_OP_END] = {
	[MIG_HOOK_MIGRATE] = "migrate",
	[MIG_HOOK_PREPARE] = "prepare",
	[MIG_HOOK_START] = "start",
	[MIG_HOOK_STARTED] = "started",
	[MIG_HOOK_STOPPED] = "stopped",
	[MIG_HOOK_RELEASE] = "release",
	[MIG_HOOK_RECONNECT] = "reconnect",
	[MIG_HOOK_RESTORE] = "restore",
};

MIG_STRING_TABLE(mig_hook_op, enum mig_hook_op, hook_op_names)
