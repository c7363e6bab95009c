// SPDX-License-Identifier: MIT
/* Checks the subcommands share, so a bad argument is a usage error (exit 2)
 * before any agent is contacted. */
#include <stdio.h>
#include <string.h>

#include <migrate/agent.h>
#include <migrate/control.h>
#include <migrate/transport.h>

#include "cli.h"
#include "util.h"

int cli_check_endpoint(const char *cmd, const char *what, const char *arg)
{
	struct mig_error err = { 0 };
	struct xport_endpoint ep;

	if (xport_endpoint_parse(arg, &ep, &err) < 0) {
		fprintf(stderr, "migratectl %s: %s: %s\n", cmd, what, err.msg);
		return EXIT_USAGE;
	}
	if (ep.kind == XPORT_EP_SSH) {
		fprintf(stderr, "migratectl %s: %s: ssh:// endpoints are not supported yet; start "
			"`migratectl agent --listen tcp://HOST:PORT --key-file F` on the host and "
			"use tcp://HOST:PORT with --key-file F\n", cmd, what);
		return EXIT_USAGE;
	}
	return 0;
}

int cli_check_name(const char *cmd, const char *name)
{
	if (mig_vm_name_ok(name, MIG_NAME_MAX))
		return 0;
	fprintf(stderr, "migratectl %s: '%.80s%s' is not a VM name: use 1 to %d characters of "
		"A-Z a-z 0-9 . _ -\n", cmd, name, strlen(name) > 80 ? "..." : "", MIG_NAME_MAX - 1);
	return EXIT_USAGE;
}

int cli_check_key_file(const char *cmd, const char *path)
{
	struct mig_error err = { 0 };
	struct mig_buf key = { 0 };
	int r = xport_key_load(path, &key, &err);

	mig_buf_free(&key);
	if (r >= 0)
		return 0;
	fprintf(stderr, "migratectl %s: --key-file: %s\n", cmd, err.msg);
	return EXIT_USAGE;
}

int cli_once(const char *cmd, const struct option *opts, int c, struct cli_seen *seen)
{
	const struct option *o;

	for (o = opts; o->name && o->val != c; o++)
		;
	if (!o->name || c < 0 || c >= (int)ARRAY_SIZE(seen->opt))
		return 0;
	if (!seen->opt[c]) {
		seen->opt[c] = true;
		return 0;
	}
	fprintf(stderr, "migratectl %s: --%s given twice: give each option once\n", cmd, o->name);
	return EXIT_USAGE;
}

int cli_agent_open(const char *cmd, const char *endpoint, const char *key_file,
		   struct mig_client *c)
{
	struct mig_error err = { 0 };
	int r = cli_check_endpoint(cmd, "ENDPOINT", endpoint);

	if (!r && key_file)
		r = cli_check_key_file(cmd, key_file);
	if (r)
		return r;
	if (mig_client_open(endpoint, key_file, c, &err) < 0) {
		fprintf(stderr, "migratectl %s: %s\n", cmd, err.msg);
		return 1;
	}
	return 0;
}
