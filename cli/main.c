// SPDX-License-Identifier: MIT
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f)
{
	fputs("usage: migratectl COMMAND [OPTIONS]\n"
	      "\n"
	      "commands:\n"
	      "  vm run [--mem SIZE] [--vcpus N] [--wss SIZE] [--pattern seq|random]\n"
	      "         [--rate max|N] [--dirty-log bitmap|ring] [--seconds S] [--json]\n"
	      "                 run a lab VM in the foreground on /dev/kvm\n"
	      "  start SRC DST [OPTIONS]\n"
	      "                 live-migrate a VM (default: a new lab VM) from SRC to DST\n"
	      "  agent --listen tcp://HOST:PORT|unix:///PATH [--key-file F] [--journal FILE]\n"
	      "                 host VMs and be the source or destination of migrations\n"
	      "  vm create ENDPOINT --name NAME [--lab SPEC]\n"
	      "  vm list ENDPOINT [--json]\n"
	      "  vm destroy ENDPOINT NAME\n"
	      "  vm resume|discard ENDPOINT NAME --migration ID\n"
	      "                 settle a VM held after a migration whose outcome is unknown\n"
	      "  migrations ENDPOINT [--json]\n"
	      "                 the migrations an agent takes part in\n"
	      "  journal ENDPOINT [--since NS] [--json]\n"
	      "                 every vCPU start and stop of the agent's VMs\n"
	      "  cancel ENDPOINT ID\n"
	      "  check SRC DST [--vm NAME] [--json]\n"
	      "                 would DST take the VM? the host compatibility policies, nothing moved\n"
	      "  chaos (--local N | --agents EP,... --key-file F) [--runs N] [--seed S]\n"
	      "        [--faults LIST] [--lab SPEC] [--json] [--replay RUN] [-- START-OPTIONS]\n"
	      "                 a campaign of migrations with faults, every invariant checked\n"
	      "  hook [--config FILE] DOMAIN OP SUBOP EXTRA\n"
	      "                 libvirt's qemu hook: host checks, site rewrites, journal records\n"
	      "\n"
	      "  --help, --version\n"
	      "see migratectl(1)\n", f);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("migratectl %s\n", MIGRATECTL_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "vm"))
		return cmd_vm(argc - 1, argv + 1);
	if (!strcmp(argv[1], "start"))
		return cmd_start(argc - 1, argv + 1);
	if (!strcmp(argv[1], "agent"))
		return cmd_agent(argc - 1, argv + 1);
	if (!strcmp(argv[1], "cancel"))
		return cmd_cancel(argc - 1, argv + 1);
	if (!strcmp(argv[1], "check"))
		return cmd_check(argc - 1, argv + 1);
	if (!strcmp(argv[1], "migrations"))
		return cmd_migrations(argc - 1, argv + 1);
	if (!strcmp(argv[1], "journal"))
		return cmd_journal(argc - 1, argv + 1);
	if (!strcmp(argv[1], "chaos"))
		return cmd_chaos(argc - 1, argv + 1);
	if (!strcmp(argv[1], "hook"))
		return cmd_hook(argc - 1, argv + 1);
	fprintf(stderr, "migratectl: unknown command '%s' (try migratectl --help)\n", argv[1]);
	return EXIT_USAGE;
}
