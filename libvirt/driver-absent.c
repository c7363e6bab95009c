// SPDX-License-Identifier: MIT
/* A build without libvirt: libvirt domains are refused, saying why. */
#include <errno.h>

#include <migrate/libvirt.h>

#define ABSENT "this migratectl was built without libvirt (install libvirt-dev and rebuild)"

int mig_lv_open(const char *uri, void (*on_lifecycle)(void *arg, const struct mig_lv_lifecycle *e),
		void *arg, struct mig_lv **ret, struct mig_error *err)
{
	(void)uri, (void)on_lifecycle, (void)arg;
	*ret = NULL;
	return mig_error_set(err, -ENOTSUP, ABSENT);
}

void mig_lv_close(struct mig_lv *lv)
{
	(void)lv;
}

int mig_lv_domain_state(struct mig_lv *lv, const char *name, uint32_t *ret_state,
			char uuid[37], bool *ret_persistent, struct mig_error *err)
{
	(void)lv, (void)name, (void)ret_state, (void)uuid, (void)ret_persistent;
	return mig_error_set(err, -ENOTSUP, ABSENT);
}

int mig_lv_migrate_start(struct mig_lv *lv, const struct mig_lv_migrate *m,
			 struct mig_lv_job **ret, struct mig_error *err)
{
	(void)lv, (void)m;
	*ret = NULL;
	return mig_error_set(err, -ENOTSUP, ABSENT);
}

int mig_lv_job_stats(struct mig_lv_job *j, struct mig_lv_stats *st, struct mig_error *err)
{
	(void)j, (void)st;
	return mig_error_set(err, -ENOTSUP, ABSENT);
}

bool mig_lv_job_done(struct mig_lv_job *j, int timeout_ms)
{
	(void)j, (void)timeout_ms;
	return true;
}

int mig_lv_job_abort(struct mig_lv_job *j, struct mig_error *err)
{
	(void)j;
	return mig_error_set(err, -ENOTSUP, ABSENT);
}

int mig_lv_job_suspend(struct mig_lv_job *j, struct mig_error *err)
{
	(void)j;
	return mig_error_set(err, -ENOTSUP, ABSENT);
}

int mig_lv_job_finish(struct mig_lv_job *j, struct mig_lv_stats *final, struct mig_error *err)
{
	(void)j, (void)final;
	return mig_error_set(err, -ENOTSUP, ABSENT);
}
