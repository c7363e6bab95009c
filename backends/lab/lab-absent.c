// SPDX-License-Identifier: MIT
/*
 * The "lab" backend of a build without the lab VM (backends/lab/meson.build:
 * no port to this architecture yet, or -Dlab=disabled).  An operator's spec
 * is still checked, so this build can drive agents that have the lab VM
 * (`migratectl start`, `vm create` against them); a VM to be made or
 * prepared here fails with one clear error instead.
 */
#include <errno.h>

#include <migrate/lab.h>
#include <migrate/vm.h>

static int lab_absent(struct mig_error *err)
{
	return mig_error_set(err, -EOPNOTSUPP, "%s", LAB_ABSENT_WHY);
}

static int absent_create(const char *spec, struct mig_vm **ret, struct mig_error *err)
{
	(void)spec;
	(void)ret;
	return lab_absent(err);
}

static int absent_prepare(const uint8_t *desc, size_t len, struct mig_vm **ret,
			  struct mig_error *err)
{
	(void)desc;
	(void)len;
	(void)ret;
	return lab_absent(err);
}

/* Never called: no VM of this backend exists. */
static void absent_summary(struct mig_vm *vm, struct mig_vm_summary *ret)
{
	(void)vm;
	*ret = (struct mig_vm_summary){ 0 };
}

const struct mig_vm_backend lab_backend = {
	.name = "lab",
	.create = absent_create,
	.check_spec = lab_spec_check,
	.prepare = absent_prepare,
	.summary = absent_summary,
};
