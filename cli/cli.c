// SPDX-License-Identifier: MIT
/* Checks the subcommands share, so a bad argument is a usage error (exit 2)
 * before any agent is contacted. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <migrate/agent.h>
#include <migrate/control.h>
#include <migrate/ssh.h>
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
	return 0;
}

static struct mig_ssh_opts ssh_opts;

const char *cli_ssh_args(void)
{
	static char buf[1200];

	snprintf(buf, sizeof(buf), "%s%s%s%s", ssh_opts.key_file ? " --ssh-key " : "",
		 ssh_opts.key_file ?: "", ssh_opts.known_hosts ? " --known-hosts " : "",
		 ssh_opts.known_hosts ?: "");
	return buf;
}

int cli_ssh_option(const char *cmd, int c, const char *arg)
{
	struct mig_ssh_opts o = ssh_opts;
	const char *name = c == CLI_OPT_SSH_KEY ? "--ssh-key" : "--known-hosts";

	switch (c) {
	case CLI_OPT_SSH_KEY:
	case CLI_OPT_KNOWN_HOSTS:
		/* read now: a file that cannot be is configuration gone wrong */
		if (access(arg, R_OK) < 0) {
			fprintf(stderr, "migratectl %s: %s %s: %s\n", cmd, name, arg,
				strerror(errno));
			return EXIT_USAGE;
		}
		if (c == CLI_OPT_SSH_KEY)
			o.key_file = arg;
		else
			o.known_hosts = arg;
		break;
	case CLI_OPT_REMOTE_MIGRATECTL:
		if (!*arg || strchr(arg, '\'') || strlen(arg) > 400) {
			fprintf(stderr, "migratectl %s: --remote-migratectl: give the path of "
				"migratectl on the remote hosts (at most 400 characters, no single "
				"quote)\n", cmd);
			return EXIT_USAGE;
		}
		o.remote_cmd = arg;
		break;
	default:
		return -1;
	}
	ssh_opts = o;
	mig_ssh_configure(&o);
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
