/* SPDX-License-Identifier: MIT */
/*
 * `migratectl check SRC DST` as one call (docs/policies.md): the source
 * agent describes a VM (MIG_OP_VM_DESCRIBE), the destination agent runs
 * every host compatibility policy on that description against its host
 * (MIG_OP_VM_CHECK).  Nothing is migrated, nothing stops; the caller
 * prints the verdicts.
 */
#ifndef MIGRATE_CHECK_H
#define MIGRATE_CHECK_H

#include <migrate/control.h>
#include <migrate/error.h>

struct mig_check_opts {
	const char *src, *dst;    /* the agents' endpoints */
	const char *key_file;     /* NULL: no key */
	const char *vm;           /* the VM on src; NULL: the only one it hosts */
};

struct mig_check_report {
	char vm[MIG_NAME_MAX];
	struct mig_check_reply head;
	struct mig_check_result *res;     /* head.nr_results of them */
};

/* 0 with the verdicts in *ret (head.refused says whether anything would
 * block the migration), or -errno when the check itself could not run
 * (an agent unreachable, no such VM). */
int mig_check_run(const struct mig_check_opts *o, struct mig_check_report *ret,
		  struct mig_error *err);
void mig_check_report_free(struct mig_check_report *r);

#endif
