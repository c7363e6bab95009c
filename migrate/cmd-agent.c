// SPDX-License-Identifier: MIT
/* migratectl agent --listen URL [--key-file F] [--socket-group GROUP] */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <migrate/agent.h>
#include <migrate/parse.h>

#include "migrate/cli.h"

#define AGENT_USAGE "usage: migratectl agent --listen tcp://HOST:PORT|unix:///PATH [--key-file F] " \
		    "[--socket-group GROUP]"

/* A group name, or a numeric gid (which need not have a name). */
static int parse_group(const char *s, gid_t *ret)
{
	struct group gr, *res = NULL;
	char buf[4096];
	uint64_t v;

	if (parse_u64(s, 0, (gid_t)-2, &v) == 0) {
		*ret = (gid_t)v;
		return 0;
	}
	if (getgrnam_r(s, &gr, buf, sizeof(buf), &res) != 0 || !res)
		return -ENOENT;
	*ret = res->gr_gid;
	return 0;
}

int cmd_agent(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "key-file", required_argument, NULL, 'k' },
		{ "socket-group", required_argument, NULL, 'g' },
		{ "ready-fd", required_argument, NULL, 'r' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct agent_opts o = { .ready_fd = -1 };
	struct mig_error err = { 0 };
	uint64_t v;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			snprintf(o.listen, sizeof(o.listen), "%s", optarg);
			break;
		case 'k':
			snprintf(o.key_file, sizeof(o.key_file), "%s", optarg);
			break;
		case 'g':
			if (parse_group(optarg, &o.socket_group) < 0) {
				fprintf(stderr, "migratectl agent: --socket-group: no group '%s' "
					"(give a group name or a numeric gid)\n", optarg);
				return EXIT_USAGE;
			}
			o.socket_group_set = true;
			break;
		case 'r':
			if (parse_u64(optarg, 0, 65535, &v) < 0) {
				fprintf(stderr, "migratectl agent: invalid --ready-fd '%s'\n", optarg);
				return EXIT_USAGE;
			}
			o.ready_fd = (int)v;
			break;
		case 'q':
			o.quiet = true;
			break;
		case 'h':
			puts(AGENT_USAGE);
			return 0;
		default:
			fputs(AGENT_USAGE "\n", stderr);
			return EXIT_USAGE;
		}
	}
	if (!o.listen[0] || optind < argc) {
		fputs("migratectl agent: --listen tcp://HOST:PORT or unix:///PATH is required\n", stderr);
		return EXIT_USAGE;
	}
	/* The key is configuration: a file it cannot use is exit 2, like a bad
	 * option, before anything listens. */
	if (o.key_file[0] && cli_check_key_file("agent", o.key_file))
		return EXIT_USAGE;
	if (agent_run(&o, &err) < 0) {
		fprintf(stderr, "migratectl agent: %s\n", err.msg);
		return err.code == -EINVAL ? EXIT_USAGE : 1;
	}
	return 0;
}
