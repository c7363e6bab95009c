// SPDX-License-Identifier: MIT
/*
 * migratectl check SRC DST [--vm NAME] [--json]: would DST take the VM on
 * SRC?  Runs the host compatibility policies (docs/policies.md) the
 * destination runs at SETUP, every one of them, and prints each verdict;
 * nothing is migrated and nothing stops.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <migrate/check.h>
#include <migrate/device.h>
#include <migrate/json.h>

#include "cli.h"

#define CHECK_USAGE "usage: migratectl check SRC DST [--vm NAME] [--json] [--key-file F]\n" \
		    "       " CLI_SSH_USAGE "\n"

static const char *verdict_name(int32_t v)
{
	return v < 0 ? "refuse" : v == MIG_CHECK_UNCHECKED ? "unchecked" : "pass";
}

/* "vcpu 0", "vcpu 0-3", or "vm" for the VM as a whole. */
static void device_name(const struct mig_check_result *x, char *out, size_t n)
{
	const char *cls = mig_dev_class_to_string((enum mig_dev_class)x->cls);

	if (!x->cls)
		snprintf(out, n, "vm");
	else if (x->count > 1)
		snprintf(out, n, "%s %u-%u", cls ?: "class", x->instance,
			 x->instance + x->count - 1);
	else
		snprintf(out, n, "%s %u", cls ?: "class", x->instance);
}

static void print_json(const struct mig_check_opts *o, const struct mig_check_report *rep)
{
	struct json_writer w;

	json_init(&w, stdout, false);
	json_obj_begin(&w, NULL);
	json_str(&w, "vm", rep->vm);
	json_str(&w, "source", o->src);
	json_str(&w, "destination", o->dst);
	json_bool(&w, "compatible", rep->head.refused == 0);
	json_u64(&w, "refused", rep->head.refused);
	json_u64(&w, "omitted", rep->head.omitted);
	json_arr_begin(&w, "policies");
	for (uint32_t i = 0; i < rep->head.nr_results; i++) {
		const struct mig_check_result *x = &rep->res[i];
		char dev[64];

		device_name(x, dev, sizeof(dev));
		json_obj_begin(&w, NULL);
		json_str(&w, "policy", x->policy);
		json_str(&w, "device", dev);
		json_str(&w, "result", verdict_name(x->verdict));
		json_str(&w, "message", x->msg[0] ? x->msg : NULL);
		json_obj_end(&w);
	}
	json_arr_end(&w);
	json_obj_end(&w);
	json_finish(&w);
}

static void print_text(const struct mig_check_opts *o, const struct mig_check_report *rep)
{
	printf("%s from %s to %s:\n", rep->vm, o->src, o->dst);
	for (uint32_t i = 0; i < rep->head.nr_results; i++) {
		const struct mig_check_result *x = &rep->res[i];
		char dev[64];

		device_name(x, dev, sizeof(dev));
		if (x->msg[0])
			printf("  %-9s %-12s %-12s %s\n", verdict_name(x->verdict), x->policy, dev,
			       x->msg);
		else
			printf("  %-9s %-12s %s\n", verdict_name(x->verdict), x->policy, dev);
	}
	if (rep->head.omitted)
		printf("  ... and %u more refusals\n", rep->head.omitted);
	if (rep->head.refused)
		printf("not compatible: %u polic%s refuse%s; the migration would stop at SETUP\n",
		       rep->head.refused, rep->head.refused == 1 ? "y" : "ies",
		       rep->head.refused == 1 ? "s" : "");
	else
		printf("compatible: no policy refuses\n");
}

int cmd_check(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "vm", required_argument, NULL, 'v' },
		{ "json", no_argument, NULL, 'j' },
		{ "key-file", required_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		CLI_SSH_OPTS,
		{ 0 }
	};
	struct mig_check_opts o = { 0 };
	struct mig_check_report rep;
	struct cli_seen seen = { 0 };
	struct mig_error err = { 0 };
	bool json = false;
	int ch, r;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (cli_once("check", opts, ch, &seen))
			return EXIT_USAGE;
		r = cli_ssh_option("check", ch, optarg);
		if (r >= 0) {
			if (r)
				return r;
			continue;
		}
		switch (ch) {
		case 'v': o.vm = optarg; break;
		case 'j': json = true; break;
		case 'k': o.key_file = optarg; break;
		case 'h':
			fputs(CHECK_USAGE, stdout);
			return 0;
		default:
			fputs(CHECK_USAGE, stderr);
			return EXIT_USAGE;
		}
	}
	if (argc - optind != 2) {
		fputs(CHECK_USAGE, stderr);
		return EXIT_USAGE;
	}
	o.src = argv[optind];
	o.dst = argv[optind + 1];
	r = cli_check_endpoint("check", "SRC", o.src);
	if (!r)
		r = cli_check_endpoint("check", "DST", o.dst);
	if (!r && o.vm)
		r = cli_check_name("check", o.vm);
	if (!r && o.key_file)
		r = cli_check_key_file("check", o.key_file);
	if (r)
		return r;
	if (mig_check_run(&o, &rep, &err) < 0) {
		fprintf(stderr, "migratectl check: %s\n", err.msg);
		return 1;
	}
	if (json)
		print_json(&o, &rep);
	else
		print_text(&o, &rep);
	r = rep.head.refused ? EXIT_INCOMPATIBLE : 0;
	mig_check_report_free(&rep);
	return r;
}
