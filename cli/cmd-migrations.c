// SPDX-License-Identifier: MIT
/*
 * migratectl migrations ENDPOINT: the migrations an agent takes part in,
 * as the source or the destination, and the VMs it holds after one whose
 * outcome was unknown.  A migration whose `start` died is found here, by
 * its id, and can then be cancelled on its source.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <uuid/uuid.h>

#include <migrate/agent.h>
#include <migrate/engine.h>
#include <migrate/json.h>
#include <migrate/wire-order.h>

#include "cli.h"
#include "util.h"

static const char *side_name(uint32_t side)
{
	return mig_side_to_string(side) ?: "unknown";
}

static const char *state_name(uint32_t st)
{
	return mig_migration_state_to_string(st) ?: "unknown";
}

static void usage(FILE *f)
{
	fputs("usage: migratectl migrations ENDPOINT [--json] [--key-file F]\n"
	      "       " CLI_SSH_USAGE "\n", f);
}

int cmd_migrations(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key-file", required_argument, NULL, 'k' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		CLI_SSH_OPTS,
		{ 0 }
	};
	const char *key_file = NULL;
	struct cli_seen seen = { 0 };
	struct mig_error err = { 0 };
	struct mig_buf extra = { 0 };
	struct mig_client c;
	struct json_writer w;
	bool json = false;
	size_t n;
	int ch, r;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (cli_once("migrations", opts, ch, &seen))
			return EXIT_USAGE;
		r = cli_ssh_option("migrations", ch, optarg);
		if (r >= 0) {
			if (r)
				return r;
			continue;
		}
		switch (ch) {
		case 'k': key_file = optarg; break;
		case 'j': json = true; break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (argc - optind != 1) {
		usage(stderr);
		return EXIT_USAGE;
	}
	r = cli_agent_open("migrations", argv[optind], key_file, &c);
	if (r)
		return r;
	r = mig_client_call(&c, MIG_OP_MIG_LIST, NULL, 0, &extra, &err);
	mig_client_close(&c);
	if (r < 0 || extra.len % sizeof(struct mig_migration_info)) {
		fprintf(stderr, "migratectl migrations: %s\n", r < 0 ? err.msg : "malformed reply");
		mig_buf_free(&extra);
		return 1;
	}
	n = extra.len / sizeof(struct mig_migration_info);
	if (json) {
		json_init(&w, stdout, false);
		json_arr_begin(&w, NULL);
	} else {
		printf("%-36s %-11s %-7s %-20s %-21s %-9s %5s %9s %8s\n", "ID", "SIDE", "STATE", "VM",
		       "PEER", "PHASE", "ROUND", "MOVED", "ELAPSED");
	}
	for (size_t i = 0; i < n; i++) {
		struct mig_migration_info m;
		char id[37];
		const char *phase;

		memcpy(&m, extra.data + i * sizeof(m), sizeof(m));
		mig_wire_le(&mig_wl_migration_info, &m, 1);
		m.name[sizeof(m.name) - 1] = '\0';
		m.peer[sizeof(m.peer) - 1] = '\0';
		m.error[sizeof(m.error) - 1] = '\0';
		uuid_unparse_lower(m.id, id);
		phase = mig_phase_to_string((enum mig_phase)m.phase) ?: "?";
		if (json) {
			json_obj_begin(&w, NULL);
			json_str(&w, "id", id);
			json_str(&w, "side", side_name(m.side));
			json_str(&w, "state", state_name(m.state));
			json_str(&w, "vm", m.name);
			json_str(&w, "peer", m.peer[0] ? m.peer : NULL);
			json_str(&w, "phase", phase);
			json_u64(&w, "round", m.round);
			json_u64(&w, "elapsed_ms", m.elapsed_ms);
			json_u64(&w, "ram_bytes", m.ram_bytes);
			json_u64(&w, "transferred_bytes", m.transferred_bytes);
			json_u64(&w, "remaining_bytes", m.remaining_bytes);
			json_u64(&w, "throughput_bps", m.throughput_bps);
			json_u64(&w, "expected_downtime_ms", m.expected_downtime_ms);
			json_str(&w, "error", m.error[0] ? m.error : NULL);
			json_obj_end(&w);
		} else {
			printf("%-36s %-11s %-7s %-20s %-21s %-9s %5u %8lluM %7.1fs\n", id,
			       side_name(m.side), state_name(m.state), m.name,
			       m.peer[0] ? m.peer : "-", phase, m.round,
			       (unsigned long long)(m.transferred_bytes >> 20),
			       (double)m.elapsed_ms / 1000);
			if (m.state == MIG_MIGRATION_HELD)
				printf("  %s\n", m.error);
		}
	}
	if (json) {
		json_arr_end(&w);
		json_finish(&w);
	}
	mig_buf_free(&extra);
	return 0;
}
