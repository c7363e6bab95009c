// SPDX-License-Identifier: MIT
/*
 * migratectl vm run: a lab VM in the foreground, its progress and dirty
 * rate.  The lab backend's own command: it is linked into the program, not
 * the library (it prints), and the CLI dispatches to it by name (cli.h).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

int lab_cmd_run(int argc, char **argv)
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

