// SPDX-License-Identifier: MIT
/* A build without libxml2 (a cross build): the hook cannot read a domain. */
#include <errno.h>

#include <migrate/lv-hook.h>

static int absent(struct mig_error *err)
{
	return mig_error_set(err, -ENOTSUP, "this migratectl was built without libxml2, so it "
			     "cannot read libvirt domain XML; install libxml2-dev and rebuild "
			     "to use the libvirt hook");
}

int lvh_domain_parse(const char *xml, size_t len, struct lvh_domain *ret, struct mig_error *err)
{
	(void)xml;
	(void)len;
	(void)ret;
	return absent(err);
}

int lvh_rewrite(const char *xml, size_t len, const struct lvh_rules *rules, char **ret_out,
		size_t *ret_len, bool *ret_changed, struct mig_error *err)
{
	(void)xml;
	(void)len;
	(void)rules;
	*ret_out = NULL;
	*ret_len = 0;
	*ret_changed = false;
	return absent(err);
}
