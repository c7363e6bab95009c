// SPDX-License-Identifier: MIT
/* migratectl vm create|list|destroy|resume|discard: VMs on an agent, and vm
 * run, which is the lab backend's own command (backends/lab/lab-run.c). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include <migrate/agent.h>
#include <migrate/json.h>
#include <migrate/parse.h>
#include <migrate/vm.h>
#include <migrate/wire-order.h>

#include "cli.h"
#include "util.h"

/* Options shared by create/list/destroy/resume/discard: --key-file,
 * --name, --lab, --json, --migration. */
struct remote_opts {
	const char *key_file;
	const char *name;
	const char *lab;
	const char *migration;
	bool json;
};

static int parse_remote(const char *cmd, int argc, char **argv, struct remote_opts *o,
			int *ret_first)
{
	static const struct option opts[] = {
		{ "key-file", required_argument, NULL, 'k' },
		{ "name", required_argument, NULL, 'n' },
		{ "lab", required_argument, NULL, 'l' },
		{ "json", no_argument, NULL, 'j' },
		{ "migration", required_argument, NULL, 'm' },
		CLI_SSH_OPTS,
		{ 0 }
	};
	struct cli_seen seen = { 0 };
	char what[32];
	int c, r;

	snprintf(what, sizeof(what), "vm %s", cmd);
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (cli_once(what, opts, c, &seen))
			return EXIT_USAGE;
		r = cli_ssh_option(what, c, optarg);
		if (r >= 0) {
			if (r)
				return r;
			continue;
		}
		switch (c) {
		case 'k': o->key_file = optarg; break;
		case 'n': o->name = optarg; break;
		case 'l': o->lab = optarg; break;
		case 'j': o->json = true; break;
		case 'm': o->migration = optarg; break;
		default:
			fprintf(stderr, "usage: migratectl vm %s ENDPOINT ... (see migratectl(1))\n", cmd);
			return EXIT_USAGE;
		}
	}
	*ret_first = optind;
	/* Checked before any agent is contacted, as the endpoint is. */
	if (o->key_file && cli_check_key_file(what, o->key_file))
		return EXIT_USAGE;
	return 0;
}

static int vm_create(int argc, char **argv)
{
	struct remote_opts o = { 0 };
	struct mig_vm_create req = { 0 };
	struct mig_error err = { 0 };
	struct mig_client c;
	struct mig_vm_summary sum;
	int first, r;

	r = parse_remote("create", argc, argv, &o, &first);
	if (r)
		return r;
	if (argc - first != 1 || !o.name) {
		fputs("usage: migratectl vm create ENDPOINT --name NAME [--lab SPEC] [--key-file F]\n",
		      stderr);
		return EXIT_USAGE;
	}
	r = cli_check_endpoint("vm create", "ENDPOINT", argv[first]);
	if (!r)
		r = cli_check_name("vm create", o.name);
	if (r)
		return r;
	if (o.lab && strlen(o.lab) >= sizeof(req.spec)) {
		fprintf(stderr, "migratectl vm create: --lab: the spec is longer than %zu characters\n",
			sizeof(req.spec) - 1);
		return EXIT_USAGE;
	}
	/* Check the spec here so a typo is a usage error, not an agent error. */
	if (o.lab && mig_vm_backend_get("lab")->check_spec(o.lab, &sum, &err) < 0) {
		fprintf(stderr, "migratectl vm create: --lab: %s\n", err.msg);
		return EXIT_USAGE;
	}
	snprintf(req.name, sizeof(req.name), "%s", o.name);
	snprintf(req.spec, sizeof(req.spec), "%s", o.lab ? o.lab : "");
	if (mig_client_open(argv[first], o.key_file, &c, &err) < 0) {
		fprintf(stderr, "migratectl vm create: %s\n", err.msg);
		return 1;
	}
	r = mig_client_call(&c, MIG_OP_VM_CREATE, &req, sizeof(req), NULL, &err);
	mig_client_close(&c);
	if (r < 0) {
		fprintf(stderr, "migratectl vm create: %s\n", err.msg);
		return 1;
	}
	return 0;
}

static const char *vm_state_name(uint32_t st)
{
	return mig_vm_state_to_string(st) ?: "unknown";
}

static int vm_list(int argc, char **argv)
{
	struct remote_opts o = { 0 };
	struct mig_error err = { 0 };
	struct mig_buf extra = { 0 };
	struct mig_client c;
	struct json_writer w;
	char held[37];
	size_t n;
	int first, r;

	r = parse_remote("list", argc, argv, &o, &first);
	if (r)
		return r;
	if (argc - first != 1) {
		fputs("usage: migratectl vm list ENDPOINT [--json] [--key-file F]\n", stderr);
		return EXIT_USAGE;
	}
	r = cli_check_endpoint("vm list", "ENDPOINT", argv[first]);
	if (r)
		return r;
	if (mig_client_open(argv[first], o.key_file, &c, &err) < 0) {
		fprintf(stderr, "migratectl vm list: %s\n", err.msg);
		return 1;
	}
	r = mig_client_call(&c, MIG_OP_VM_LIST, NULL, 0, &extra, &err);
	mig_client_close(&c);
	if (r < 0 || extra.len % sizeof(struct mig_vm_info)) {
		fprintf(stderr, "migratectl vm list: %s\n", r < 0 ? err.msg : "malformed reply");
		mig_buf_free(&extra);
		return 1;
	}
	n = extra.len / sizeof(struct mig_vm_info);
	if (o.json) {
		json_init(&w, stdout, false);
		json_arr_begin(&w, NULL);
	} else {
		printf("%-24s %-10s %8s %6s %10s %12s\n", "NAME", "STATE", "MEM", "VCPUS", "PASSES",
		       "SELFCHECK");
	}
	for (size_t i = 0; i < n; i++) {
		struct mig_vm_info v;

		memcpy(&v, extra.data + i * sizeof(v), sizeof(v));
		mig_wire_le(&mig_wl_vm_info, &v, 1);
		v.name[sizeof(v.name) - 1] = '\0';
		v.held_peer[sizeof(v.held_peer) - 1] = '\0';
		if (v.state == MIG_VM_HELD)
			uuid_unparse_lower(v.held_by, held);
		if (o.json) {
			json_obj_begin(&w, NULL);
			json_str(&w, "name", v.name);
			json_str(&w, "state", vm_state_name(v.state));
			json_u64(&w, "mem_bytes", v.mem_bytes);
			json_u64(&w, "vcpus", v.vcpus);
			json_u64(&w, "wss_bytes", v.wss_bytes);
			json_u64(&w, "passes", v.passes);
			json_u64(&w, "selfcheck_errors", v.errors);
			if (v.state == MIG_VM_HELD) {
				json_str(&w, "held_by", held);
				json_str(&w, "held_peer", v.held_peer);
			} else {
				json_null(&w, "held_by");
				json_null(&w, "held_peer");
			}
			json_obj_end(&w);
		} else {
			printf("%-24s %-10s %7lluM %6u %10llu %12llu\n", v.name, vm_state_name(v.state),
			       (unsigned long long)(v.mem_bytes >> 20), v.vcpus,
			       (unsigned long long)v.passes, (unsigned long long)v.errors);
			if (v.state == MIG_VM_HELD)
				printf("  held by migration %s to %s: ownership unknown; check there, "
				       "then vm resume or vm discard naming it\n", held, v.held_peer);
		}
	}
	if (o.json) {
		json_arr_end(&w);
		json_finish(&w);
	}
	mig_buf_free(&extra);
	return 0;
}

static int vm_destroy(int argc, char **argv)
{
	struct remote_opts o = { 0 };
	struct mig_vm_ref req = { 0 };
	struct mig_error err = { 0 };
	struct mig_client c;
	int first, r;

	r = parse_remote("destroy", argc, argv, &o, &first);
	if (r)
		return r;
	if (argc - first != 2) {
		fputs("usage: migratectl vm destroy ENDPOINT NAME [--key-file F]\n", stderr);
		return EXIT_USAGE;
	}
	r = cli_check_endpoint("vm destroy", "ENDPOINT", argv[first]);
	if (!r)
		r = cli_check_name("vm destroy", argv[first + 1]);
	if (r)
		return r;
	snprintf(req.name, sizeof(req.name), "%s", argv[first + 1]);
	if (mig_client_open(argv[first], o.key_file, &c, &err) < 0) {
		fprintf(stderr, "migratectl vm destroy: %s\n", err.msg);
		return 1;
	}
	r = mig_client_call(&c, MIG_OP_VM_DESTROY, &req, sizeof(req), NULL, &err);
	mig_client_close(&c);
	if (r < 0) {
		fprintf(stderr, "migratectl vm destroy: %s\n", err.msg);
		return 1;
	}
	return 0;
}

/* vm resume|discard ENDPOINT NAME --migration ID: an operator settles a VM
 * held after a migration whose outcome was unknown. */
static int vm_resolve(const char *cmd, uint32_t action, int argc, char **argv)
{
	struct remote_opts o = { 0 };
	struct mig_vm_resolve req = { .action = action };
	struct mig_error err = { 0 };
	struct mig_client c;
	char what[32];
	uuid_t uu;
	int first, r;

	snprintf(what, sizeof(what), "vm %s", cmd);
	r = parse_remote(cmd, argc, argv, &o, &first);
	if (r)
		return r;
	if (argc - first != 2 || !o.migration) {
		fprintf(stderr, "usage: migratectl vm %s ENDPOINT NAME --migration ID [--key-file F]\n"
			"  ID: the migration that left the VM held (migratectl vm list ENDPOINT)\n",
			cmd);
		return EXIT_USAGE;
	}
	r = cli_check_endpoint(what, "ENDPOINT", argv[first]);
	if (!r)
		r = cli_check_name(what, argv[first + 1]);
	if (r)
		return r;
	if (uuid_parse(o.migration, uu) < 0) {
		fprintf(stderr, "migratectl %s: --migration '%s' is not a migration id (a UUID)\n",
			what, o.migration);
		return EXIT_USAGE;
	}
	snprintf(req.name, sizeof(req.name), "%s", argv[first + 1]);
	memcpy(req.id, uu, sizeof(req.id));
	if (mig_client_open(argv[first], o.key_file, &c, &err) < 0) {
		fprintf(stderr, "migratectl %s: %s\n", what, err.msg);
		return 1;
	}
	mig_wire_le(&mig_wl_vm_resolve, &req, 1);
	r = mig_client_call(&c, MIG_OP_VM_RESOLVE, &req, sizeof(req), NULL, &err);
	mig_client_close(&c);
	if (r < 0) {
		fprintf(stderr, "migratectl %s: %s\n", what, err.msg);
		return 1;
	}
	return 0;
}

int cmd_vm(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: migratectl vm run|create|list|destroy|resume|discard ... "
			"(see migratectl(1))\n");
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "run"))
		return lab_cmd_run(argc - 1, argv + 1);
	if (!strcmp(argv[1], "create"))
		return vm_create(argc - 1, argv + 1);
	if (!strcmp(argv[1], "list"))
		return vm_list(argc - 1, argv + 1);
	if (!strcmp(argv[1], "destroy"))
		return vm_destroy(argc - 1, argv + 1);
	if (!strcmp(argv[1], "resume"))
		return vm_resolve("resume", MIG_RESOLVE_RESUME, argc - 1, argv + 1);
	if (!strcmp(argv[1], "discard"))
		return vm_resolve("discard", MIG_RESOLVE_DISCARD, argc - 1, argv + 1);
	fprintf(stderr, "migratectl vm: unknown subcommand '%s'\n", argv[1]);
	return EXIT_USAGE;
}
