// SPDX-License-Identifier: MIT
/*
 * The libvirt driver of a build without libvirt (a cross build without
 * its -dev package): every call fails with one clear reason.
 */
#include <errno.h>

#include <migrate/libvirt.h>

#define ABSENT(err) mig_error_set(err, -ENOTSUP, "this migratectl was built without libvirt")

int mig_lv_open(const char *uri, void (*on_lifecycle)(void *arg, const struct mig_lv_lifecycle *e),
		void *arg, struct mig_lv **ret, struct mig_error *err)
{
	(void)uri, (void)on_lifecycle, (void)arg;
	*ret = NULL;
	return ABSENT(err);
}

void mig_lv_close(struct mig_lv *lv)
{
	(void)lv;
}

int mig_lv_domain_state(struct mig_lv *lv, const char *name, uint32_t *ret_state,
			char uuid[37], bool *ret_persistent, struct mig_error *err)
{
	(void)lv, (void)name, (void)ret_state, (void)uuid, (void)ret_persistent;
	return ABSENT(err);
}

int mig_lv_running(struct mig_lv *lv, char (*uuids)[37], unsigned max, unsigned *ret_n,
		   struct mig_error *err)
{
	(void)lv, (void)uuids, (void)max;
	*ret_n = 0;
	return ABSENT(err);
}

int mig_lv_migrate_start(struct mig_lv *lv, const struct mig_lv_migrate *m,
			 struct mig_lv_job **ret, struct mig_error *err)
{
	(void)lv, (void)m;
	*ret = NULL;
	return ABSENT(err);
}

/* No job can exist: these are never reached with one. */
int mig_lv_job_stats(struct mig_lv_job *j, struct mig_lv_stats *st, struct mig_error *err)
{
	(void)j, (void)st;
	return ABSENT(err);
}

bool mig_lv_job_done(struct mig_lv_job *j, int timeout_ms)
{
	(void)j, (void)timeout_ms;
	return true;
}

int mig_lv_job_abort(struct mig_lv_job *j, struct mig_error *err)
{
	(void)j;
	return ABSENT(err);
}

int mig_lv_job_suspend(struct mig_lv_job *j, struct mig_error *err)
{
	(void)j;
	return ABSENT(err);
}

int mig_lv_job_postcopy(struct mig_lv_job *j, struct mig_error *err)
{
	(void)j;
	return ABSENT(err);
}

int mig_lv_job_finish(struct mig_lv_job *j, struct mig_lv_stats *final, struct mig_error *err)
{
	(void)j, (void)final;
	return ABSENT(err);
}
