// SPDX-License-Identifier: MIT
/* ssh:// endpoints in a build without libssh2 (a cross build): every
 * connection fails with one clear reason. */
#include <errno.h>

#include <migrate/ssh.h>

void mig_ssh_configure(const struct mig_ssh_opts *o)
{
	(void)o;
}

int mig_ssh_open(const struct xport_endpoint *ep, struct mig_ssh **ret, struct mig_error *err)
{
	(void)ep;
	*ret = NULL;
	return mig_error_set(err, -ENOTSUP, "this migratectl was built without libssh2: it "
			     "cannot reach ssh:// endpoints (use tcp://HOST:PORT with --key-file)");
}

struct mig_ssh *mig_ssh_ref(struct mig_ssh *s)
{
	return s;
}

void mig_ssh_unref(struct mig_ssh *s)
{
	(void)s;
}

int mig_ssh_connect_agent(struct mig_ssh *s, struct mig_error *err)
{
	(void)s;
	return mig_error_set(err, -ENOTSUP, "this migratectl was built without libssh2");
}

int mig_ssh_tunnel(struct mig_ssh *from, struct mig_ssh *to, int to_port, int *ret_port,
		   struct mig_error *err)
{
	(void)from;
	(void)to;
	(void)to_port;
	*ret_port = 0;
	return mig_error_set(err, -ENOTSUP, "this migratectl was built without libssh2");
}

bool mig_ssh_alive(struct mig_ssh *s)
{
	(void)s;
	return false;
}

const char *mig_ssh_agent_path(const struct mig_ssh *s)
{
	(void)s;
	return "";
}
