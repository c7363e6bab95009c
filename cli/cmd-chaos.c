// SPDX-License-Identifier: MIT
/*
 * migratectl chaos (--local N | --agents EP,... --key-file F) [--runs N]
 *   [--vm libvirt:NAME]
 *   [--duration D] [--seed S] [--faults LIST] [--phases LIST] [--lab SPEC]
 *   [--dir DIR] [--settle D] [--json] [--replay RUN] [--list] [-- START-OPTIONS...]
 *
 * The campaign runs in the library (chaos/runner.c); this prints its
 * progress, the table and the violations, or one JSON object.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <migrate/chaos-run.h>
#include <migrate/engine.h>
#include <migrate/json.h>
#include <migrate/parse.h>

#include "cli.h"
#include "util.h"

#define CHAOS_USAGE \
	"usage: migratectl chaos (--local N | --agents EP,EP,... --key-file F) [--runs N]\n" \
	"         [--vm libvirt:NAME]\n" \
	"         [--duration D] [--seed S] [--faults LIST] [--phases LIST]\n" \
	"         [--lab SPEC] [--dir DIR]\n" \
	"         [--settle D] [--netns auto|never|always] [--json] [--replay RUN]\n" \
	"         [--list] [--dry-run]\n" \
	"         [-- START-OPTIONS...]\n"
#define CHAOS_DEFAULT_LAB "mem=64M,vcpus=2,wss=16M,pattern=random,vfio=1"

static volatile int stop_asked;

static void on_sigint(int sig)
{
	(void)sig;
	stop_asked = 1;
}

struct view {
	bool tty, json;
	uint64_t total;           /* runs planned (0: by duration) */
	uint64_t done, bad, t0_ms, last_line_ms;
};

static void on_run(void *arg, const struct chaos_run *run)
{
	struct view *v = arg;
	uint64_t now = mig_now_ms();
	double rate;

	v->done++;
	if (run->invariant) {
		v->bad++;
		fprintf(stderr, "%sVIOLATION run %" PRIu64 ": %s (%s, aimed at %s: %s)\n  %s\n"
			"  saved in %s\n  replay: %s\n", v->tty ? "\r\033[K" : "", run->index,
			chaos_invariant_name(run->invariant), chaos_kinds[run->fault.kind].name,
			mig_phase_to_string(run->fault.phase), run->fault.trigger, run->detail,
			run->dir, run->replay);
	}
	rate = v->done * 1000.0 / (double)(now - v->t0_ms + 1);
	if (v->tty) {
		char bar[31];
		unsigned fill = v->total ? (unsigned)(v->done * 30 / v->total) : 0;

		for (unsigned i = 0; i < 30; i++)
			bar[i] = i < fill ? '#' : '.';
		bar[30] = '\0';
		fprintf(stderr, "\r\033[K[%s] %" PRIu64 "/%" PRIu64 " runs, %" PRIu64 " violations, "
			"%.1f runs/s; last: %s in %s -> %s", bar, v->done, v->total, v->bad, rate,
			chaos_kinds[run->fault.kind].name, mig_phase_to_string(run->fault.phase),
			chaos_outcome_name(run->outcome));
	} else if (now - v->last_line_ms >= 10000 || (v->total && v->done == v->total)) {
		fprintf(stderr, "chaos: %" PRIu64 "/%" PRIu64 " runs, %" PRIu64 " violations, "
			"%.1f runs/s\n", v->done, v->total, v->bad, rate);
		v->last_line_ms = now;
	}
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static uint32_t pct(const struct chaos_report *r, unsigned p)
{
	return r->nr_run_ms ? r->run_ms[(r->nr_run_ms - 1) * p / 100] : 0;
}

static const char *phase_short(unsigned p)
{
	return mig_phase_to_string((enum mig_phase)p);
}

static void print_text(const struct chaos_report *r)
{
	printf("chaos campaign, seed %" PRIu64 ": %" PRIu64 " runs in %.1f s, %" PRIu64 " with "
	       "the fault injected, %" PRIu64 " violations\n", r->seed, r->runs,
	       r->elapsed_ms / 1000.0, r->fired, r->violations);
	printf("cluster: %s\nnetwork faults: %s\n", r->cluster, r->network);
	if (r->lv_overlaps_tolerated)
		printf("libvirt: %" PRIu64 " overlaps of the domain's runs within the %llu ms "
		       "allowed for libvirt's event delivery, the longest %.3f ms\n",
		       r->lv_overlaps_tolerated,
		       (unsigned long long)(CHAOS_LV_OVERLAP_TOLERANCE_NS / 1000000),
		       r->lv_overlap_max_ns / 1e6);
	printf("run time: p50 %u ms, p90 %u ms, p99 %u ms, max %u ms\n\n", pct(r, 50), pct(r, 90),
	       pct(r, 99), pct(r, 100));
	printf("%-15s %-9s %5s %5s", "fault", "phase", "runs", "fired");
	for (unsigned o = 1; o < _CHAOS_OUT_END; o++)
		printf(" %s", chaos_outcome_name((enum chaos_outcome)o));
	printf("\n");
	for (unsigned k = 0; k < chaos_nr_kinds; k++)
		for (unsigned p = MIG_PHASE_SETUP; p < _MIG_PHASE_MAX; p++) {
			uint32_t n = 0;

			for (unsigned o = 1; o < _CHAOS_OUT_END; o++)
				n += r->table[k][p][o];
			if (!n)
				continue;
			printf("%-15s %-9s %5u %5u", chaos_kinds[k].name, phase_short(p), n,
			       r->fired_by_kind[k][p]);
			for (unsigned o = 1; o < _CHAOS_OUT_END; o++)
				printf(" %*u", (int)strlen(chaos_outcome_name((enum chaos_outcome)o)),
				       r->table[k][p][o]);
			printf("\n");
		}
	for (unsigned i = 0; i < r->nr_bad; i++)
		printf("\nviolation: run %" PRIu64 ", %s in %s (%s): %s: %s\n  saved in %s\n  "
		       "replay: %s\n", r->bad[i].index, chaos_kinds[r->bad[i].fault.kind].name,
		       phase_short(r->bad[i].fault.phase), r->bad[i].fault.trigger,
		       chaos_invariant_name(r->bad[i].invariant), r->bad[i].detail, r->bad[i].dir,
		       r->bad[i].replay);
}

static void print_json(const struct chaos_report *r, const struct chaos_opts *o)
{
	struct json_writer w;

	json_init(&w, stdout, false);
	json_obj_begin(&w, NULL);
	json_u64(&w, "seed", r->seed);
	json_str(&w, "faults", o->faults ? o->faults : "all");
	json_str(&w, "lab", o->lv_domain ? NULL : o->lab);
	if (o->lv_domain) {
		json_obj_begin(&w, "libvirt");
		json_str(&w, "domain", o->lv_domain);
		json_u64(&w, "overlap_tolerance_ms", CHAOS_LV_OVERLAP_TOLERANCE_NS / 1000000);
		json_u64(&w, "overlaps_tolerated", r->lv_overlaps_tolerated);
		json_f64(&w, "overlap_max_ms", r->lv_overlap_max_ns / 1e6);
		json_obj_end(&w);
	}
	json_u64(&w, "runs", r->runs);
	json_u64(&w, "fired", r->fired);
	json_u64(&w, "violation_count", r->violations);
	json_u64(&w, "elapsed_ms", r->elapsed_ms);
	json_str(&w, "cluster", r->cluster);
	json_str(&w, "network_faults", r->network);
	json_obj_begin(&w, "run_ms");
	json_u64(&w, "p50", pct(r, 50));
	json_u64(&w, "p90", pct(r, 90));
	json_u64(&w, "p99", pct(r, 99));
	json_u64(&w, "max", pct(r, 100));
	json_obj_end(&w);
	json_arr_begin(&w, "table");
	for (unsigned k = 0; k < chaos_nr_kinds; k++)
		for (unsigned p = MIG_PHASE_SETUP; p < _MIG_PHASE_MAX; p++) {
			uint32_t n = 0;

			for (unsigned oc = 1; oc < _CHAOS_OUT_END; oc++)
				n += r->table[k][p][oc];
			if (!n)
				continue;
			json_obj_begin(&w, NULL);
			json_str(&w, "fault", chaos_kinds[k].name);
			json_str(&w, "class", chaos_class_name(chaos_kinds[k].cls));
			json_str(&w, "phase", phase_short(p));
			json_u64(&w, "runs", n);
			json_u64(&w, "fired", r->fired_by_kind[k][p]);
			json_obj_begin(&w, "outcomes");
			for (unsigned oc = 1; oc < _CHAOS_OUT_END; oc++)
				json_u64(&w, chaos_outcome_name((enum chaos_outcome)oc), r->table[k][p][oc]);
			json_obj_end(&w);
			json_obj_end(&w);
		}
	json_arr_end(&w);
	json_arr_begin(&w, "violations");
	for (unsigned i = 0; i < r->nr_bad; i++) {
		const struct chaos_run *b = &r->bad[i];

		json_obj_begin(&w, NULL);
		json_u64(&w, "run", b->index);
		json_u64(&w, "seed", r->seed);
		json_str(&w, "fault", chaos_kinds[b->fault.kind].name);
		json_str(&w, "phase", phase_short(b->fault.phase));
		json_str(&w, "trigger", b->fault.trigger);
		json_str(&w, "invariant", chaos_invariant_name(b->invariant));
		json_str(&w, "detail", b->detail);
		json_str(&w, "saved", b->dir);
		json_str(&w, "replay", b->replay);
		json_obj_end(&w);
	}
	json_arr_end(&w);
	json_obj_end(&w);
	json_finish(&w);
}

static void list_faults(void)
{
	printf("%-15s %-9s %-40s %s\n", "fault", "class", "phases", "what");
	for (unsigned k = 0; k < chaos_nr_kinds; k++) {
		char ph[64] = "";

		for (unsigned p = MIG_PHASE_SETUP; p < _MIG_PHASE_MAX; p++)
			if (chaos_kinds[k].phases & CHAOS_PH(p))
				snprintf(ph + strlen(ph), sizeof(ph) - strlen(ph), "%s%s", ph[0] ? "," : "",
					 phase_short(p));
		printf("%-15s %-9s %-40s %s\n", chaos_kinds[k].name,
		       chaos_class_name(chaos_kinds[k].cls), ph, chaos_kinds[k].what);
	}
}

/* --agents EP,EP,... into o */
static int parse_agents(char *list, struct chaos_opts *o)
{
	char *save = NULL;

	for (char *w = strtok_r(list, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
		if (o->nr_agents == CHAOS_MAX_AGENTS) {
			fprintf(stderr, "migratectl chaos: --agents: at most %d agents\n",
				CHAOS_MAX_AGENTS);
			return EXIT_USAGE;
		}
		/* unix:// only for a libvirt domain's agents: checked once all
		 * options are read */
		if (strncmp(w, "tcp://", 6) && strncmp(w, "unix://", 7)) {
			fprintf(stderr, "migratectl chaos: --agents: %s: give tcp://HOST:PORT "
				"agents started with --chaos\n", w);
			return EXIT_USAGE;
		}
		if (cli_check_endpoint("chaos", "--agents", w))
			return EXIT_USAGE;
		o->agents[o->nr_agents++] = w;
	}
	return 0;
}

/* The agents given, against the campaign: a lab VM's need tcp:// and a key;
 * a libvirt domain's may be unix:// (the key then optional). */
static int check_agents(const struct chaos_opts *o)
{
	bool tcp = false;

	for (unsigned i = 0; i < o->nr_agents; i++) {
		if (!strncmp(o->agents[i], "tcp://", 6)) {
			tcp = true;
			continue;
		}
		if (!o->lv_domain) {
			fprintf(stderr, "migratectl chaos: --agents: %s: give tcp://HOST:PORT "
				"agents started with --chaos\n", o->agents[i]);
			return EXIT_USAGE;
		}
	}
	if (o->nr_agents && !o->key_file && tcp) {
		fputs("migratectl chaos: --agents needs --key-file (the agents' key)\n", stderr);
		return EXIT_USAGE;
	}
	if (o->lv_domain && !o->nr_agents) {
		fputs("migratectl chaos: --vm libvirt:NAME needs --agents (agents started with "
		      "--libvirt next to each libvirtd)\n", stderr);
		return EXIT_USAGE;
	}
	return 0;
}

int cmd_chaos(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "local", required_argument, NULL, 'L' },
		{ "agents", required_argument, NULL, 'A' },
		{ "key-file", required_argument, NULL, 'k' },
		{ "runs", required_argument, NULL, 'n' },
		{ "duration", required_argument, NULL, 'd' },
		{ "seed", required_argument, NULL, 's' },
		{ "faults", required_argument, NULL, 'f' },
		{ "phases", required_argument, NULL, 'p' },
		{ "lab", required_argument, NULL, 'l' },
		{ "dir", required_argument, NULL, 'D' },
		{ "settle", required_argument, NULL, 'S' },
		{ "json", no_argument, NULL, 'j' },
		{ "replay", required_argument, NULL, 'R' },
		{ "list", no_argument, NULL, 'K' },
		{ "dry-run", no_argument, NULL, 'P' },
		{ "netns", required_argument, NULL, 'N' },
		{ "vm", required_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct chaos_opts o = { .lab = CHAOS_DEFAULT_LAB, .settle_ms = 300 };
	struct sigaction sa = { .sa_handler = on_sigint };
	struct view v = { .tty = isatty(STDERR_FILENO) };
	static struct chaos_report rep;
	struct mig_error err = { 0 };
	struct cli_seen seen = { 0 };
	char self[4096], dir[256];
	bool dry_run = false;
	uint64_t u;
	int c, r;
	ssize_t n;

	o.mask = ~0ULL >> (64 - chaos_nr_kinds);
	o.seed = (uint64_t)time(NULL);
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (cli_once("chaos", opts, c, &seen))
			return EXIT_USAGE;
		switch (c) {
		case 'L':
			if (parse_u64(optarg, 2, CHAOS_MAX_AGENTS, &u) < 0) {
				fprintf(stderr, "migratectl chaos: --local %s: give 2 to %d agents\n",
					optarg, CHAOS_MAX_AGENTS);
				return EXIT_USAGE;
			}
			o.local = (unsigned)u;
			break;
		case 'A':
			if (parse_agents(optarg, &o))
				return EXIT_USAGE;
			break;
		case 'k':
			if (cli_check_key_file("chaos", optarg))
				return EXIT_USAGE;
			o.key_file = optarg;
			break;
		case 'n':
			if (parse_u64(optarg, 1, 100000000, &o.runs) < 0) {
				fprintf(stderr, "migratectl chaos: --runs %s: give a count from 1\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'd':
			if (parse_duration_ms(optarg, 1000, &o.duration_ms) < 0 || !o.duration_ms) {
				fprintf(stderr, "migratectl chaos: --duration %s: give a duration, e.g. "
					"30m or 90s\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 's':
			if (parse_u64(optarg, 0, UINT64_MAX, &o.seed) < 0) {
				fprintf(stderr, "migratectl chaos: --seed %s: give a number\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'f':
			if (chaos_faults_parse(optarg, &o.mask, &err) < 0) {
				fprintf(stderr, "migratectl chaos: %s\n", err.msg);
				return EXIT_USAGE;
			}
			o.faults = optarg;
			break;
		case 'p':
			if (chaos_phases_parse(optarg, &o.phases, &err) < 0) {
				fprintf(stderr, "migratectl chaos: %s\n", err.msg);
				return EXIT_USAGE;
			}
			o.phases_arg = optarg;
			break;
		case 'l':
			o.lab = optarg;
			break;
		case 'D':
			o.dir = optarg;
			break;
		case 'S':
			if (parse_duration_ms(optarg, 1, &u) < 0 || u < 50 || u > 60000) {
				fprintf(stderr, "migratectl chaos: --settle %s: give 50ms to 60s\n", optarg);
				return EXIT_USAGE;
			}
			o.settle_ms = (uint32_t)u;
			break;
		case 'j':
			v.json = true;
			break;
		case 'R':
			if (parse_u64(optarg, 0, UINT64_MAX, &o.replay_run) < 0) {
				fprintf(stderr, "migratectl chaos: --replay %s: give a run number (the "
					"report prints the whole command)\n", optarg);
				return EXIT_USAGE;
			}
			o.replay = true;
			break;
		case 'K':
			list_faults();
			return 0;
		case 'P':
			dry_run = true;
			break;
		case 'N':
			if (!strcmp(optarg, "auto"))
				o.netns = 0;
			else if (!strcmp(optarg, "never"))
				o.netns = -1;
			else if (!strcmp(optarg, "always"))
				o.netns = 1;
			else {
				fprintf(stderr, "migratectl chaos: --netns %s: give auto (namespaces "
					"when root), never or always\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'V':
			if (strncmp(optarg, "libvirt:", 8) || !optarg[8] ||
			    strlen(optarg + 8) >= MIG_LV_NAME_MAX) {
				fprintf(stderr, "migratectl chaos: --vm %s: give libvirt:NAME, a "
					"running libvirt domain (the lab VM is --lab's)\n", optarg);
				return EXIT_USAGE;
			}
			o.lv_domain = optarg + 8;
			break;
		case 'h':
			fputs(CHAOS_USAGE, stdout);
			return 0;
		default:
			fputs(CHAOS_USAGE, stderr);
			return EXIT_USAGE;
		}
	}
	if (!o.local == !o.nr_agents) {
		fputs("migratectl chaos: give --local N (agents started here) or --agents EP,EP,... "
		      "(agents started with --chaos), one of them\n", stderr);
		return EXIT_USAGE;
	}
	if (check_agents(&o))
		return EXIT_USAGE;
	if (o.phases && o.lv_domain) {
		fputs("migratectl chaos: --phases is for a lab VM's campaign (a libvirt domain's "
		      "faults are aimed at setup, precopy and stop_copy in turn)\n", stderr);
		return EXIT_USAGE;
	}
	if (o.nr_agents == 1) {
		fputs("migratectl chaos: --agents: a migration needs at least 2 agents\n", stderr);
		return EXIT_USAGE;
	}
	/* what follows "--" goes to each start */
	if (optind < argc) {
		if (strcmp(argv[optind - 1], "--")) {
			fprintf(stderr, "migratectl chaos: unexpected '%s' (start's options go after "
				"--)\n", argv[optind]);
			return EXIT_USAGE;
		}
		o.start_args = (const char *const *)argv + optind;
		o.nr_start_args = (unsigned)(argc - optind);
	}
	if (!o.runs && !o.duration_ms)
		o.runs = o.replay ? 1 : 100;
	if (dry_run) {
		/* what the campaign would inject, run by run: nothing runs */
		for (uint64_t i = o.replay ? o.replay_run : 0; i < (o.replay ? o.replay_run + 1 :
								    o.runs); i++) {
			struct chaos_fault f;

			if (o.lv_domain)
				chaos_lv_fault_make(o.seed, i, o.mask, o.lv_domain, &f);
			else
				chaos_fault_make_in(o.seed, i, chaos_cluster_mask(o.mask, o.local > 0),
						    o.phases, "VM", &f);
			printf("%" PRIu64 " %s %s: %s\n", i, chaos_kinds[f.kind].name,
			       mig_phase_to_string(f.phase), f.trigger);
		}
		return 0;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0) {
		fprintf(stderr, "migratectl chaos: cannot find this program: %s\n", strerror(errno));
		return 1;
	}
	self[n] = '\0';
	o.self = self;
	if (!o.dir) {
		snprintf(dir, sizeof(dir), "/tmp/migratectl-chaos-%" PRIu64 "-%d", o.seed, (int)getpid());
		o.dir = dir;
	}
	v.total = o.replay ? 1 : o.runs;
	v.t0_ms = mig_now_ms();
	o.on_run = on_run;
	o.arg = &v;
	o.stop = &stop_asked;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (!v.json)
		fprintf(stderr, "chaos: seed %" PRIu64 ", %s, logs and violations in %s\n", o.seed,
			o.replay ? "replaying one run" : "campaign", o.dir);
	r = chaos_campaign(&o, &rep, &err);
	if (v.tty)
		fputs("\r\033[K", stderr);
	if (r < 0) {
		fprintf(stderr, "migratectl chaos: %s\n", err.msg);
		chaos_report_free(&rep);
		return 1;
	}
	if (rep.nr_run_ms)
		qsort(rep.run_ms, rep.nr_run_ms, sizeof(*rep.run_ms), cmp_u32);
	if (v.json)
		print_json(&rep, &o);
	else
		print_text(&rep);
	r = rep.violations ? 1 : 0;
	chaos_report_free(&rep);
	return r;
}
