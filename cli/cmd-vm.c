// SPDX-License-Identifier: MIT
/* migratectl vm run: a lab VM in the foreground, its progress and dirty rate. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include <migrate/agent.h>
#include <migrate/json.h>
#include <migrate/lab.h>
#include <migrate/parse.h>

#include "cli.h"
#include "util.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int bad_option(const char *opt, const char *val, const char *want)
{
	fprintf(stderr, "migratectl vm run: invalid %s '%s': %s\n", opt, val, want);
	return EXIT_USAGE;
}

static void vm_run_usage(FILE *f)
{
	fputs("usage: migratectl vm run [--mem SIZE] [--vcpus N] [--wss SIZE]\n"
	      "                         [--pattern seq|random] [--rate max|N]\n"
	      "                         [--dirty-log bitmap|ring] [--seconds S] [--json]\n", f);
}

struct run_totals {
	double steady_s, all_s;
	uint64_t steady_dirty, all_dirty;
	uint64_t steady_pages, all_pages;
};

static int vm_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mem", required_argument, NULL, 'm' },
		{ "vcpus", required_argument, NULL, 'c' },
		{ "wss", required_argument, NULL, 'w' },
		{ "pattern", required_argument, NULL, 'p' },
		{ "rate", required_argument, NULL, 'r' },
		{ "dirty-log", required_argument, NULL, 'd' },
		{ "seconds", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct lab_config cfg;
	struct mig_error err = { 0 };
	struct lab_vm *vm = NULL;
	struct lab_stats st, prev;
	struct run_totals tot = { 0 };
	uint64_t seconds = 0, v, *bitmap = NULL, words;
	bool json = false;
	struct cli_seen seen = { 0 };
	sigset_t sigs;
	int c, r, rc = 0, secs_run = 0;
	double t_start, t_prev;

	lab_config_default(&cfg);
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (cli_once("vm run", opts, c, &seen))
			return EXIT_USAGE;
		switch (c) {
		case 'm':
			if (parse_size(optarg, &cfg.mem_bytes) < 0)
				return bad_option("--mem", optarg, "expected a size such as 1G or 512M");
			break;
		case 'c':
			if (parse_u64(optarg, 1, LAB_MAX_VCPUS, &v) < 0)
				return bad_option("--vcpus", optarg, "expected an integer from 1 to 64");
			cfg.vcpus = (uint32_t)v;
			break;
		case 'w':
			if (parse_size(optarg, &cfg.wss_bytes) < 0)
				return bad_option("--wss", optarg, "expected a size such as 64M, or 0");
			break;
		case 'p':
			r = lab_pattern_from_string(optarg);
			if (r < 0)
				return bad_option("--pattern", optarg, "expected seq or random");
			cfg.pattern = (enum lab_pattern)r;
			break;
		case 'r':
			if (parse_rate(optarg, &cfg.rate) < 0)
				return bad_option("--rate", optarg,
						  "expected max or a positive number of pages per second");
			break;
		case 'd':
			r = lab_dirty_log_from_string(optarg);
			if (r < 0)
				return bad_option("--dirty-log", optarg, "expected bitmap or ring");
			cfg.dirty_log = (enum lab_dirty_log)r;
			break;
		case 's':
			if (parse_u64(optarg, 1, 86400 * 365, &seconds) < 0)
				return bad_option("--seconds", optarg, "expected a positive whole number");
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			vm_run_usage(stdout);
			return 0;
		default:
			vm_run_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "migratectl vm run: unexpected argument '%s'\n", argv[optind]);
		return EXIT_USAGE;
	}
	if (lab_config_check(&cfg, &err) < 0) {
		fprintf(stderr, "migratectl vm run: %s\n", err.msg);
		return EXIT_USAGE;
	}

	/* Blocked before any vCPU thread exists, so only sigtimedwait sees them. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	if (lab_vm_create(&cfg, &vm, &err) < 0) {
		fprintf(stderr, "migratectl vm run: %s\n", err.msg);
		return 1;
	}
	words = lab_vm_bitmap_words(vm);
	bitmap = calloc(words, sizeof(uint64_t));
	if (!bitmap) {
		fprintf(stderr, "migratectl vm run: out of memory\n");
		lab_vm_destroy(vm);
		return 1;
	}
	if (!json)
		printf("lab VM: %llu MiB, %u vCPUs, working set %llu MiB, %s order, rate %s, "
		       "dirty log %s\n", (unsigned long long)(cfg.mem_bytes >> 20), cfg.vcpus,
		       (unsigned long long)(cfg.wss_bytes >> 20), lab_pattern_to_string(cfg.pattern),
		       cfg.rate ? "limited" : "max", lab_vm_dirty_log_mode(vm));
	if (lab_vm_start(vm, &err) < 0) {
		fprintf(stderr, "migratectl vm run: starting the guest: %s\n", err.msg);
		rc = 1;
		goto out;
	}
	t_start = t_prev = now_s();
	lab_vm_stats(vm, &prev);
	for (;;) {
		struct timespec one = { 1, 0 };
		uint64_t dirty = 0;
		double t, dt;
		int sig = sigtimedwait(&sigs, NULL, &one);

		/* The guest's counters before the sync: a fill that ends after
		 * it (this thread may be preempted in between) is then still
		 * "filling" here, and its last pages do not count as steady. */
		lab_vm_stats(vm, &st);
		memset(bitmap, 0, words * sizeof(uint64_t));
		if (lab_vm_dirty_sync(vm, bitmap, &dirty, &err) < 0) {
			fprintf(stderr, "migratectl vm run: dirty log: %s\n", err.msg);
			rc = 1;
			break;
		}
		t = now_s();
		dt = t - t_prev;
		if (dt > 0) {
			secs_run++;
			tot.all_s += dt;
			tot.all_dirty += dirty;
			tot.all_pages += st.pages - prev.pages;
			/* Steady state: the whole interval after every vCPU finished its fill. */
			if (prev.all_filled) {
				tot.steady_s += dt;
				tot.steady_dirty += dirty;
				tot.steady_pages += st.pages - prev.pages;
			}
		}
		if (!json && dt > 0)
			printf("%6.1fs  %s %3.0f%%  passes %llu  guest writes %.0f pages/s  "
			       "dirty %.0f pages/s (%.1f MiB/s)  self-check errors %llu\n",
			       t - t_start, st.all_filled ? "running" : "filling",
			       100.0 * (double)st.filled / (double)((cfg.mem_bytes - LAB_SYSTEM_BYTES) >> 12),
			       (unsigned long long)st.passes, (double)(st.pages - prev.pages) / dt,
			       (double)dirty / dt, (double)dirty * 4096 / dt / (1 << 20),
			       (unsigned long long)st.errors);
		fflush(stdout);
		t_prev = t;
		prev = st;
		if (st.fatal) {
			fprintf(stderr, "migratectl vm run: %s\n", st.fatal_msg);
			rc = 1;
			break;
		}
		if (sig > 0 || (seconds && (uint64_t)secs_run >= seconds))
			break;
	}
	if (lab_vm_pause(vm, &err) < 0) {
		fprintf(stderr, "migratectl vm run: pausing: %s\n", err.msg);
		rc = 1;
	}
	lab_vm_stats(vm, &st);
	if (st.errors || st.error_reports) {
		fprintf(stderr, "migratectl vm run: the guest found %llu self-check errors\n",
			(unsigned long long)st.errors);
		rc = 1;
	}
	if (json) {
		struct json_writer w;
		bool steady = tot.steady_s > 0;
		double secs = steady ? tot.steady_s : tot.all_s;

		json_init(&w, stdout, false);
		json_obj_begin(&w, NULL);
		json_u64(&w, "vcpus", cfg.vcpus);
		json_u64(&w, "mem_bytes", cfg.mem_bytes);
		json_u64(&w, "wss_bytes", cfg.wss_bytes);
		json_str(&w, "pattern", lab_pattern_to_string(cfg.pattern));
		json_u64(&w, "rate", cfg.rate);
		json_str(&w, "dirty_log", lab_vm_dirty_log_mode(vm));
		json_f64(&w, "seconds", tot.all_s);
		json_u64(&w, "passes", st.passes);
		json_u64(&w, "pages_written", st.pages);
		json_f64(&w, "pages_per_s", secs > 0 ?
			 (double)(steady ? tot.steady_pages : tot.all_pages) / secs : 0);
		json_f64(&w, "dirty_pages_per_s", secs > 0 ?
			 (double)(steady ? tot.steady_dirty : tot.all_dirty) / secs : 0);
		json_f64(&w, "dirty_bytes_per_s", secs > 0 ?
			 (double)(steady ? tot.steady_dirty : tot.all_dirty) * 4096 / secs : 0);
		json_bool(&w, "steady_state", steady);
		json_u64(&w, "selfcheck_errors", st.errors);
		json_u64(&w, "ring_full_exits", st.ring_full_exits);
		json_str(&w, "error", st.fatal ? st.fatal_msg : NULL);
		json_obj_end(&w);
		json_finish(&w);
	}
out:
	free(bitmap);
	lab_vm_destroy(vm);
	return rc;
}

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
		{ 0 }
	};
	struct cli_seen seen = { 0 };
	char what[32];
	int c;

	snprintf(what, sizeof(what), "vm %s", cmd);
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (cli_once(what, opts, c, &seen))
			return EXIT_USAGE;
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
		return vm_run(argc - 1, argv + 1);
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
