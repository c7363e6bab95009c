// SPDX-License-Identifier: MIT
/*
 * migratectl journal ENDPOINT [--since NS] [--json] [--key-file F]: the
 * agent's journal of vCPU starts and stops (docs/chaos.md), oldest first;
 * --json prints each record as the line the agent's --journal file has.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <uuid/uuid.h>

#include <migrate/agent.h>
#include <migrate/journal.h>
#include <migrate/parse.h>
#include <migrate/vm.h>

#include "cli.h"
#include "util.h"

static void usage(FILE *f)
{
	fputs("usage: migratectl journal ENDPOINT [--since NS] [--json] [--key-file F]\n"
	      "       " CLI_SSH_USAGE "\n", f);
}

/* start, stop, or for a libvirt hook record the hook's operation */
static const char *event_word(const struct mig_journal_rec *rec)
{
	const char *op = mig_hook_op_to_string(rec->detail);

	if (rec->event == MIG_VCPU_RUN_START)
		return "start";
	if (rec->event == MIG_VCPU_RUN_STOP)
		return "stop";
	return rec->event == MIG_JOURNAL_HOOK && op ? op : "?";
}

int cmd_journal(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "since", required_argument, NULL, 's' },
		{ "key-file", required_argument, NULL, 'k' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		CLI_SSH_OPTS,
		{ 0 }
	};
	const char *key_file = NULL;
	struct cli_seen seen = { 0 };
	struct mig_error err = { 0 };
	struct mig_buf recs = { 0 };
	struct mig_journal_reply info = { 0 };
	struct mig_client c;
	uint64_t since = 0;
	bool json = false;
	int ch, r;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (cli_once("journal", opts, ch, &seen))
			return EXIT_USAGE;
		r = cli_ssh_option("journal", ch, optarg);
		if (r >= 0) {
			if (r)
				return r;
			continue;
		}
		switch (ch) {
		case 's':
			if (parse_u64(optarg, 0, UINT64_MAX, &since) < 0) {
				fprintf(stderr, "migratectl journal: --since '%s' is not a time in "
					"nanoseconds since the epoch (CLOCK_REALTIME, as the records' "
					"realtime_ns)\n", optarg);
				return EXIT_USAGE;
			}
			break;
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
	r = cli_agent_open("journal", argv[optind], key_file, &c);
	if (r)
		return r;
	r = mig_client_journal(&c, since, &recs, &info, &err);
	mig_client_close(&c);
	if (r < 0) {
		fprintf(stderr, "migratectl journal: %s\n", err.msg);
		mig_buf_free(&recs);
		return 1;
	}
	if (info.dropped)
		fprintf(stderr, "migratectl journal: the agent's ring holds its last %u records; "
			"%llu older ones are only in its --journal file, if it has one\n",
			info.capacity, (unsigned long long)info.dropped);
	if (!json)
		printf("%8s %-20s %-20s %-20s %5s %-5s %-36s %s\n", "SEQ", "REALTIME_NS",
		       "MONOTONIC_NS", "VM", "VCPU", "EVENT", "MIGRATION", "PID");
	for (size_t off = 0; off + sizeof(struct mig_journal_rec) <= recs.len;
	     off += sizeof(struct mig_journal_rec)) {
		struct mig_journal_rec rec;
		char line[MIG_JOURNAL_LINE_MAX], id[37] = "-";

		memcpy(&rec, recs.data + off, sizeof(rec));
		if (json) {
			mig_journal_rec_format(&rec, line, sizeof(line));
			puts(line);
			continue;
		}
		for (unsigned i = 0; i < 16; i++)
			if (rec.mig_id[i]) {
				uuid_unparse_lower(rec.mig_id, id);
				break;
			}
		printf("%8llu %-20llu %-20llu %-20s %5u %-5s %-36s %u\n",
		       (unsigned long long)rec.seq, (unsigned long long)rec.realtime_ns,
		       (unsigned long long)rec.monotonic_ns, rec.vm, rec.vcpu,
		       event_word(&rec), id, rec.pid);
	}
	mig_buf_free(&recs);
	return 0;
}
