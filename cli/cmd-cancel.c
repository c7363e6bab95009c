// SPDX-License-Identifier: MIT
/* migratectl cancel ENDPOINT ID: cancel a migration that ENDPOINT is the source of. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <uuid/uuid.h>

#include <migrate/agent.h>

#include "cli.h"

int cmd_cancel(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key-file", required_argument, NULL, 'k' },
		CLI_SSH_OPTS,
		{ 0 }
	};
	const char *key_file = NULL;
	struct mig_error err = { 0 };
	struct mig_cancel req;
	struct mig_client c;
	struct cli_seen seen = { 0 };
	uuid_t uu;
	int ch, r;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (cli_once("cancel", opts, ch, &seen))
			return EXIT_USAGE;
		r = cli_ssh_option("cancel", ch, optarg);
		if (r >= 0) {
			if (r)
				return r;
			continue;
		}
		if (ch != 'k') {
			fputs("usage: migratectl cancel ENDPOINT ID [--key-file F] " CLI_SSH_USAGE "\n", stderr);
			return EXIT_USAGE;
		}
		key_file = optarg;
	}
	if (argc - optind != 2) {
		fputs("usage: migratectl cancel ENDPOINT ID [--key-file F] " CLI_SSH_USAGE "\n", stderr);
		return EXIT_USAGE;
	}
	r = cli_check_endpoint("cancel", "ENDPOINT", argv[optind]);
	if (r)
		return r;
	if (uuid_parse(argv[optind + 1], uu) < 0) {
		fprintf(stderr, "migratectl cancel: '%s' is not a migration id (a UUID)\n",
			argv[optind + 1]);
		return EXIT_USAGE;
	}
	if (key_file && cli_check_key_file("cancel", key_file))
		return EXIT_USAGE;
	memcpy(req.id, uu, 16);
	if (mig_client_open(argv[optind], key_file, &c, &err) < 0) {
		fprintf(stderr, "migratectl cancel: %s\n", err.msg);
		return 1;
	}
	r = mig_client_call(&c, MIG_OP_MIG_CANCEL, &req, sizeof(req), NULL, &err);
	mig_client_close(&c);
	if (r < 0) {
		fprintf(stderr, "migratectl cancel: %s\n", err.msg);
		return 1;
	}
	return 0;
}
