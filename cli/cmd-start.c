// SPDX-License-Identifier: MIT
/*
 * migratectl start SRC DST: create or pick the VM on SRC, prepare DST, run
 * the migration on SRC while printing its progress, and report the outcome.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <migrate/agent.h>
#include <migrate/device.h>
#include <migrate/engine.h>
#include <migrate/json.h>
#include <migrate/parse.h>
#include <migrate/policy.h>
#include <migrate/start.h>
#include <migrate/stream.h>

#include "cli.h"
#include "util.h"

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

struct start_opts {
	const char *src, *dst;
	const char *vm;
	const char *lab;
	const char *key_file;
	uint32_t streams;
	struct xport_compress compress;
	uint64_t downtime_ms, max_bw, timeout_ms, switchover_ms;
	enum conv_timeout_action action;
	enum conv_mode converge;
	uint32_t max_throttle;
	uint64_t stall_ms, stall_bytes;
	enum conv_stall_action stall_action;   /* 0: by mode */
	uint32_t postcopy_after;  /* 0: the default (1 round) */
	uint64_t recover_ms;      /* 0: the default */
	int verify;   /* -1 default */
	enum mig_checksum checksum;
	uint32_t encrypt;         /* enum mig_encrypt */
	uint32_t handover;        /* enum mig_handover_mode */
	bool json;
	bool libvirt;             /* --vm libvirt:NAME */
	bool copy_storage;
	bool tunnel;
};

/* The human summary's words for the checksum mode the RESULT reports. */
static const char *checksum_text(const struct mig_event *e, enum mig_checksum asked)
{
	if (e->checksum != MIG_CHECKSUM_PAGES && e->checksum != MIG_CHECKSUM_FRAMES)
		return "not decided yet";
	if (e->checksum == MIG_CHECKSUM_FRAMES && e->same_host && asked == MIG_CHECKSUM_AUTO)
		return "frames (auto: both agents on this host)";
	return mig_checksum_to_string(e->checksum);
}

/* --stall: what is left not shrinking for this long takes the stall action. */
#define DEFAULT_STALL_MS 30000

static int usage_error(const char *fmt, const char *arg)
{
	fputs("migratectl start: ", stderr);
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	return EXIT_USAGE;
}

static void start_usage(FILE *f)
{
	fputs("usage: migratectl start SRC DST [--vm NAME | --vm libvirt:DOMAIN | --lab SPEC]\n"
	      "          [--streams N] [--copy-storage]\n"
	      "          [--compress none|zstd[:LEVEL]|auto] [--downtime-limit MS]\n"
	      "          [--max-bandwidth BYTES/s] [--timeout DURATION]\n"
	      "          [--timeout-action abort|force] [--verify|--no-verify] [--json]\n"
	      "          [--checksum auto|pages|frames] [--switchover-timeout DURATION]\n"
	      "          [--encrypt auto|always|never] [--handover auto|always|never]\n"
	      "          [--converge none|throttle|postcopy|auto] [--max-throttle PCT]\n"
	      "          [--stall DURATION] [--stall-bytes SIZE]\n"
	      "          [--stall-action abort|throttle|postcopy] [--postcopy-after ROUNDS]\n"
	      "          [--recover-window DURATION]\n"
	      "          [--key-file F] " CLI_SSH_USAGE " [--tunnel]\n"
	      "  SRC, DST: local | tcp://HOST:PORT | HOST:PORT | unix:///PATH |\n"
	      "            ssh://[USER@]HOST[:PORT][/PATH]\n", f);
}

/* "512 MiB", "1.5 GiB": a size for a message. */
static const char *size_text(char *buf, size_t n, double bytes)
{
	static const char *const units[] = { "bytes", "KiB", "MiB", "GiB", "TiB" };
	unsigned u = 0;

	while (bytes >= 1024 && u + 1 < ARRAY_SIZE(units)) {
		bytes /= 1024;
		u++;
	}
	snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
	return buf;
}

/*
 * Round 0 sends every page of guest RAM (a lab VM writes all of it), so
 * RAM / --max-bandwidth is the least PRECOPY can take, and the timeout is
 * only checked after a round.  When that floor reaches --timeout, an abort
 * migration runs that long to fail (unless the guest is idle enough to
 * converge at once, late), and a force one switches over only then: refuse
 * the first, warn about the second.  Returns 0 to go on, or -1 with the
 * reason in why.
 */
static int check_first_round(const struct start_opts *o, uint64_t mem_bytes, char *why, size_t n)
{
	char ram[32], bw[32], need[32];
	double floor_s, timeout_s = (double)o->timeout_ms / 1000;

	if (!o->max_bw || !o->timeout_ms)
		return 0;
	floor_s = (double)mem_bytes / (double)o->max_bw;
	if (floor_s < timeout_s)
		return 0;
	size_text(ram, sizeof(ram), (double)mem_bytes);
	size_text(bw, sizeof(bw), (double)o->max_bw);
	if (o->action == CONV_TIMEOUT_FORCE) {
		fprintf(stderr, "migratectl start: warning: round 0 sends all %s of guest RAM, at "
			"least %.1f s at --max-bandwidth %s/s, past --timeout %.1f s; the timeout is "
			"checked after each round, so the migration switches over (--timeout-action "
			"force) only after round 0, copying what the guest wrote meanwhile while it "
			"is stopped\n", ram, floor_s, bw, timeout_s);
		return 0;
	}
	size_text(need, sizeof(need), (double)mem_bytes / timeout_s);
	snprintf(why, n, "--max-bandwidth %s/s cannot move round 0 within --timeout %.1f s: it "
		 "sends all %s of guest RAM, at least %.1f s at that cap, and the migration would "
		 "fail after that (--timeout-action abort); raise --max-bandwidth above %s/s or "
		 "--timeout above %.1f s, or give --timeout-action force to switch over after "
		 "round 0", bw, timeout_s, ram, floor_s, need, floor_s);
	return -1;
}

static int parse_start(int argc, char **argv, struct start_opts *o)
{
	static const struct option opts[] = {
		{ "vm", required_argument, NULL, 'v' },
		{ "lab", required_argument, NULL, 'l' },
		{ "streams", required_argument, NULL, 's' },
		{ "compress", required_argument, NULL, 'c' },
		{ "downtime-limit", required_argument, NULL, 'd' },
		{ "max-bandwidth", required_argument, NULL, 'b' },
		{ "timeout", required_argument, NULL, 't' },
		{ "timeout-action", required_argument, NULL, 'a' },
		{ "verify", no_argument, NULL, 'V' },
		{ "no-verify", no_argument, NULL, 'N' },
		{ "json", no_argument, NULL, 'j' },
		{ "key-file", required_argument, NULL, 'k' },
		{ "checksum", required_argument, NULL, 'C' },
		{ "switchover-timeout", required_argument, NULL, 'S' },
		{ "copy-storage", no_argument, NULL, 'G' },
		{ "tunnel", no_argument, NULL, 'T' },
		{ "encrypt", required_argument, NULL, 'E' },
		{ "converge", required_argument, NULL, 'M' },
		{ "max-throttle", required_argument, NULL, 'X' },
		{ "stall", required_argument, NULL, 'L' },
		{ "stall-bytes", required_argument, NULL, 'B' },
		{ "stall-action", required_argument, NULL, 'A' },
		{ "postcopy-after", required_argument, NULL, 'Q' },
		{ "recover-window", required_argument, NULL, 'R' },
		{ "handover", required_argument, NULL, 'H' },
		{ "help", no_argument, NULL, 'h' },
		CLI_SSH_OPTS,
		{ 0 }
	};
	struct mig_error err = { 0 };
	struct cli_seen seen = { 0 };
	struct mig_vm_summary vm;
	char why[512];
	uint64_t v;
	int c, r;

	o->streams = 2;
	o->downtime_ms = 300;
	o->verify = -1;
	o->compress.codec = XPORT_CODEC_NONE;
	o->checksum = MIG_CHECKSUM_AUTO;
	o->action = CONV_TIMEOUT_ABORT;
	o->converge = CONV_MODE_AUTO;
	o->max_throttle = CONV_DEFAULT_MAX_THROTTLE;
	o->stall_ms = DEFAULT_STALL_MS;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (cli_once("start", opts, c, &seen))
			return EXIT_USAGE;
		r = cli_ssh_option("start", c, optarg);
		if (r >= 0) {
			if (r)
				return r;
			continue;
		}
		if ((c == 'V' || c == 'N') && seen.opt['V'] && seen.opt['N'])
			return usage_error("%s", "--verify and --no-verify exclude each other: "
					   "give one of them");
		switch (c) {
		case 'v': o->vm = optarg; break;
		case 'l': o->lab = optarg; break;
		case 's':
			if (parse_u64(optarg, 1, MIG_MAX_STREAMS, &v) < 0)
				return usage_error("invalid --streams '%s': expected 1 to 16", optarg);
			o->streams = (uint32_t)v;
			break;
		case 'c':
			if (xport_compress_parse(optarg, &o->compress, &err) < 0)
				return usage_error("--compress: %s", err.msg);
			break;
		case 'd':
			if (parse_duration_ms(optarg, 1, &o->downtime_ms) < 0 || !o->downtime_ms)
				return usage_error("invalid --downtime-limit '%s': expected milliseconds "
						   "such as 300 or 300ms", optarg);
			break;
		case 'b':
			if (parse_size(optarg, &o->max_bw) < 0 || !o->max_bw)
				return usage_error("invalid --max-bandwidth '%s': expected bytes per "
						   "second such as 500M", optarg);
			break;
		case 't':
			if (parse_duration_ms(optarg, 1000, &o->timeout_ms) < 0 || !o->timeout_ms)
				return usage_error("invalid --timeout '%s': expected a duration such as "
						   "60s or 2m", optarg);
			break;
		case 'a':
			r = conv_timeout_action_from_string(optarg);
			if (r < 0)
				return usage_error("invalid --timeout-action '%s': expected abort or force",
						   optarg);
			o->action = (enum conv_timeout_action)r;
			break;
		case 'V': o->verify = 1; break;
		case 'N': o->verify = 0; break;
		case 'j': o->json = true; break;
		case 'C':
			r = mig_checksum_from_string(optarg);
			if (r < 0)
				return usage_error("invalid --checksum '%s': expected auto (the "
						   "default), pages (every page's data too) or frames "
						   "(headers and page lists only)", optarg);
			o->checksum = (enum mig_checksum)r;
			break;
		case 'H':
			r = mig_handover_mode_from_string(optarg);
			if (r < 0)
				return usage_error("invalid --handover '%s': expected auto (the "
						   "default: hand guest RAM over when both agents are "
						   "on this host), always or never (copy it)", optarg);
			o->handover = (uint32_t)r;
			break;
		case 'E':
			r = mig_encrypt_from_string(optarg);
			if (r < 0)
				return usage_error("invalid --encrypt '%s': expected auto (the default: "
						   "the streams that leave this host), always or never",
						   optarg);
			o->encrypt = (uint32_t)r;
			break;
		case 'S':
			if (parse_duration_ms(optarg, 1000, &o->switchover_ms) < 0 || !o->switchover_ms)
				return usage_error("invalid --switchover-timeout '%s': expected a "
						   "duration such as 10s", optarg);
			break;
		case 'M':
			r = conv_mode_from_string(optarg);
			if (r < 0)
				return usage_error("invalid --converge '%s': expected none, throttle, "
						   "postcopy or auto (the default)", optarg);
			o->converge = (enum conv_mode)r;
			break;
		case 'X':
			if (parse_u64(optarg, 1, CONV_DEFAULT_MAX_THROTTLE, &v) < 0)
				return usage_error("invalid --max-throttle '%s': expected a percentage "
						   "from 1 to 99", optarg);
			o->max_throttle = (uint32_t)v;
			break;
		case 'L':
			if (parse_duration_ms(optarg, 1000, &o->stall_ms) < 0)
				return usage_error("invalid --stall '%s': expected a duration such as "
						   "30s, or 0 for no time bound", optarg);
			break;
		case 'B':
			if (parse_size(optarg, &o->stall_bytes) < 0)
				return usage_error("invalid --stall-bytes '%s': expected a size such as "
						   "8G, or 0 for no byte bound", optarg);
			break;
		case 'A':
			r = conv_stall_action_from_string(optarg);
			if (r < 0)
				return usage_error("invalid --stall-action '%s': expected abort, throttle "
						   "or postcopy", optarg);
			o->stall_action = (enum conv_stall_action)r;
			break;
		case 'Q':
			if (parse_u64(optarg, 1, 64, &v) < 0)
				return usage_error("invalid --postcopy-after '%s': expected a number of "
						   "pre-copy rounds from 1 to 64", optarg);
			o->postcopy_after = (uint32_t)v;
			break;
		case 'R':
			if (parse_duration_ms(optarg, 1000, &o->recover_ms) < 0 || !o->recover_ms)
				return usage_error("invalid --recover-window '%s': expected a duration "
						   "such as 60s", optarg);
			break;
		case 'k': o->key_file = optarg; break;
		case 'G': o->copy_storage = true; break;
		case 'T': o->tunnel = true; break;
		case 'h':
			start_usage(stdout);
			return 1;
		default:
			start_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (argc - optind != 2) {
		start_usage(stderr);
		return EXIT_USAGE;
	}
	o->src = argv[optind];
	o->dst = argv[optind + 1];
	if (o->vm && o->lab)
		return usage_error("%s", "--vm and --lab exclude each other");
	if (o->postcopy_after && o->converge != CONV_MODE_POSTCOPY)
		return usage_error("%s", "--postcopy-after applies to --converge postcopy only");
	o->libvirt = o->vm && !strncmp(o->vm, MIG_START_LIBVIRT_PREFIX,
				       strlen(MIG_START_LIBVIRT_PREFIX));
	if (o->libvirt) {
		/* QEMU sends its own stream: what shapes ours has no say in it */
		static const struct { int c; const char *name, *why; } engine_only[] = {
#define OWN_STREAM "QEMU sends its own migration stream"
			{ 'c', "--compress", OWN_STREAM }, { 'V', "--verify", OWN_STREAM },
			{ 'N', "--no-verify", OWN_STREAM }, { 'C', "--checksum", OWN_STREAM },
			{ 'S', "--switchover-timeout", OWN_STREAM },
#undef OWN_STREAM
			{ 'X', "--max-throttle", "libvirt 9.0 passes no bound for QEMU's "
			  "auto-converge, which throttles up to QEMU's own 99 %" },
#define NO_STALL "migratectl does not watch libvirt's migration for stalls; " \
		 "--timeout bounds it"
			{ 'L', "--stall", NO_STALL }, { 'B', "--stall-bytes", NO_STALL },
			{ 'A', "--stall-action", NO_STALL },
#undef NO_STALL
			{ 'R', "--recover-window", "migratectl does not recover a libvirt "
			  "post-copy that broke (the domain stays paused on both hosts, exit 3)" },
		};

		for (size_t i = 0; i < ARRAY_SIZE(engine_only); i++)
			if (seen.opt[engine_only[i].c]) {
				fprintf(stderr, "migratectl start: %s does not apply to a libvirt "
					"domain: %s (docs/libvirt.md)\n", engine_only[i].name,
					engine_only[i].why);
				return EXIT_USAGE;
			}
		/* libvirt's own default: no help unless asked for */
		if (!seen.opt['M'])
			o->converge = CONV_MODE_NONE;
		if (!seen.opt['d'])
			o->downtime_ms = 0;   /* libvirt's own default */
	} else if (o->copy_storage) {
		return usage_error("%s", "--copy-storage applies to libvirt domains only "
				   "(--vm libvirt:DOMAIN)");
	}
	if (o->vm && !o->libvirt && cli_check_name("start", o->vm))
		return EXIT_USAGE;
	if (strlen(o->lab ? o->lab : "") >= 256 ||
	    mig_vm_backend_get("lab")->check_spec(o->lab, &vm, &err) < 0)
		return usage_error("--lab: %s", err.msg[0] ? err.msg : "spec too long");
	if (cli_check_endpoint("start", "SRC", o->src) || cli_check_endpoint("start", "DST", o->dst))
		return EXIT_USAGE;
	if (o->tunnel && (strncmp(o->src, "ssh://", 6) || strncmp(o->dst, "ssh://", 6)))
		return usage_error("%s", "--tunnel carries the migration streams through the ssh "
				   "connections: SRC and DST must both be ssh:// endpoints");
	if (o->tunnel && o->libvirt)
		return usage_error("%s", "--tunnel does not carry libvirt domains yet");
	if (strcmp(o->src, "local") && !strcmp(o->src, o->dst))
		return usage_error("SRC and DST are the same agent (%s)", o->src);
	if (o->key_file && cli_check_key_file("start", o->key_file))
		return EXIT_USAGE;
	/* A lab VM made here has its size now; a --vm one after the lookup. */
	if (!o->vm && check_first_round(o, vm.mem_bytes, why, sizeof(why)) < 0)
		return usage_error("%s", why);
	return 0;
}

static const char *result_name(uint32_t r)
{
	return mig_result_to_string(r) ?: "failed";
}

static const char *owner_name(uint32_t o)
{
	return mig_owner_to_string(o) ?: "none";
}

static void hex128(const uint64_t d[2], char *buf)
{
	struct mig_digest g = { d[0], d[1] };

	mig_digest_format(&g, buf);
}

/* The keys every summary begins with. */
static void json_head(struct json_writer *w, const char *id, const struct mig_event *e)
{
	json_init(w, stdout, false);
	json_obj_begin(w, NULL);
	json_str(w, "id", id);
	json_str(w, "result", result_name(e->result));
	json_str(w, "owner", owner_name(e->owner));
	json_str(w, "error", e->error[0] ? e->error : NULL);
	json_u64(w, "total_ms", e->total_ms);
}

/* The summary.  Without `started` (the source's result), e holds only the
 * outcome: the migration never started, or how it ended is unknown, so no
 * phase, device or actual setting is reported. */
static void print_json(const char *id, const struct mig_event *e,
		       const struct mig_event_device *devs, const struct start_opts *o,
		       uint64_t prepare_ms, bool started, const char *vm,
		       const struct mig_start_result *held)
{
	struct json_writer w;
	char a[MIG_DIGEST_HEX], b[MIG_DIGEST_HEX], codec[32];

	if (e->codec == XPORT_CODEC_ZSTD)
		snprintf(codec, sizeof(codec), "zstd:%d", o->compress.level ? o->compress.level : 1);
	else
		snprintf(codec, sizeof(codec), "none");
	json_head(&w, id, e);
	json_u64(&w, "setup_ms", e->setup_ms);
	json_u64(&w, "prepare_ms", prepare_ms);
	if (e->result == MIG_RESULT_COMPLETED || e->owner == MIG_OWNER_DESTINATION)
		json_u64(&w, "downtime_ms", e->downtime_ms);
	else
		json_null(&w, "downtime_ms");
	json_u64(&w, "rounds", e->round);
	json_u64(&w, "streams", e->streams);
	if (started)
		json_str(&w, "compression", codec);
	else
		json_null(&w, "compression");
	json_str(&w, "compression_requested", xport_codec_to_string(o->compress.codec));
	if (started && (e->checksum == MIG_CHECKSUM_PAGES || e->checksum == MIG_CHECKSUM_FRAMES))
		json_str(&w, "checksum", mig_checksum_to_string(e->checksum));
	else
		json_null(&w, "checksum");   /* failed before auto was resolved */
	json_str(&w, "checksum_requested", mig_checksum_to_string(o->checksum));
	if (started)
		json_str(&w, "encryption", e->encrypted ? "aes-256-gcm" : "none");
	else
		json_null(&w, "encryption");
	json_str(&w, "encrypt_requested", mig_encrypt_to_string(o->encrypt));
	/* same-host hand-over: whether RAM was handed over, else why not */
	json_obj_begin(&w, "handover");
	json_bool(&w, "used", e->handover == MIG_HANDOVER_DONE);
	json_str(&w, "requested", mig_handover_mode_to_string(o->handover));
	if (e->handover == MIG_HANDOVER_DONE || !started)
		json_null(&w, "reason");
	else
		json_str(&w, "reason", mig_handover_why_to_string(e->handover));
	json_obj_end(&w);
	json_u64(&w, "throughput_bps", e->throughput_bps);
	json_obj_begin(&w, "ram");
	json_u64(&w, "total_bytes", e->ram_total_bytes);
	json_u64(&w, "transferred_bytes", e->transferred_bytes);
	json_u64(&w, "wire_bytes", e->wire_bytes);
	json_u64(&w, "zero_pages", e->zero_pages);
	json_u64(&w, "normal_pages", e->normal_pages);
	json_u64(&w, "dirty_rate_bps", e->dirty_rate_bps);
	json_obj_end(&w);
	json_arr_begin(&w, "phases");
	for (int p = MIG_PHASE_SETUP; started && p < _MIG_PHASE_MAX; p++) {
		if (!e->phase_start_ms[p] && !e->phase_duration_ms[p] && p != MIG_PHASE_SETUP)
			continue;
		json_obj_begin(&w, NULL);
		json_str(&w, "name", mig_phase_to_string(p));
		json_u64(&w, "start_ms", e->phase_start_ms[p]);
		json_u64(&w, "duration_ms", e->phase_duration_ms[p]);
		json_obj_end(&w);
	}
	json_arr_end(&w);
	json_arr_begin(&w, "devices");
	/* each device as the source's engine left it (none when it never started) */
	for (uint32_t i = 0; started && devs && i < e->nr_devices; i++) {
		const struct mig_device_class *cls = mig_device_class_get(devs[i].cls);

		json_obj_begin(&w, NULL);
		json_str(&w, "class", cls ? cls->name : "unknown");
		json_str(&w, "side", "source");
		json_u64(&w, "id", devs[i].id);
		json_str(&w, "state", cls && devs[i].state < cls->nr_states ?
			 cls->state_names[devs[i].state] : "unknown");
		json_u64(&w, "bytes", devs[i].bytes);
		json_arr_begin(&w, "notes");
		for (unsigned k = 0; k < 32; k++)
			if (devs[i].notes & (1U << k))
				json_str(&w, NULL, cls && k < cls->nr_notes ? cls->note_names[k] :
						   "unknown");
		json_arr_end(&w);
		json_obj_end(&w);
	}
	json_arr_end(&w);
	if (e->verified) {
		hex128(e->digest_src, a);
		hex128(e->digest_dst, b);
		json_obj_begin(&w, "verify");
		json_str(&w, "digest_src", a);
		json_str(&w, "digest_dst", b);
		json_bool(&w, "match", !strcmp(a, b));
		json_u64(&w, "dst_passes_at_start", e->dst_passes_before);
		json_u64(&w, "dst_passes_after", e->dst_passes_after);
		json_u64(&w, "dst_selfcheck_errors", e->dst_errors);
		json_u64(&w, "verify_ms", e->verify_ms);
		json_obj_end(&w);
	}
	/* what KVM counted on the source while the guest ran under dirty logging */
	if (e->kvm_valid) {
		json_obj_begin(&w, "kvm_precopy");
		json_u64(&w, "exits", e->kvm_exits);
		json_u64(&w, "page_faults", e->kvm_page_faults);
		json_u64(&w, "halt_exits", e->kvm_halt_exits);
		json_u64(&w, "remote_tlb_flushes", e->kvm_remote_tlb_flushes);
		json_u64(&w, "halt_successful_polls", e->kvm_halt_successful_polls);
		json_u64(&w, "halt_attempted_polls", e->kvm_halt_attempted_polls);
		json_u64(&w, "vcpus", e->kvm_vcpus);
		if (e->kvm_halted_permille != MIG_KVM_HALTED_UNKNOWN) {
			json_u64(&w, "halt_poll_success_ns", e->kvm_halt_poll_success_ns);
			json_u64(&w, "halt_poll_fail_ns", e->kvm_halt_poll_fail_ns);
			json_u64(&w, "halt_wait_ns", e->kvm_halt_wait_ns);
			json_f64(&w, "halted_share", e->kvm_halted_permille / 1000.0);
		} else {
			json_null(&w, "halt_poll_success_ns");
			json_null(&w, "halt_poll_fail_ns");
			json_null(&w, "halt_wait_ns");
			json_null(&w, "halted_share");
		}
		json_obj_end(&w);
	} else {
		json_null(&w, "kvm_precopy");
	}
	json_obj_begin(&w, "convergence");
	json_str(&w, "mode", started ? conv_mode_to_string(e->converge) : NULL);
	json_str(&w, "mode_requested", conv_mode_to_string(o->converge));
	json_u64(&w, "max_throttle_pct", o->max_throttle);
	json_u64(&w, "throttle_pct", e->throttle_pct);
	json_u64(&w, "throttle_ms", e->throttle_ms);
	json_u64(&w, "guest_rate", e->guest_rate);
	if (e->guest_rate_free)
		json_u64(&w, "guest_rate_unthrottled", e->guest_rate_free);
	else
		json_null(&w, "guest_rate_unthrottled");
	if (e->stall_action) {
		json_obj_begin(&w, "stall");
		json_u64(&w, "after_ms", e->stall_ms);
		json_str(&w, "action", conv_stall_action_to_string(e->stall_action));
		json_obj_end(&w);
	} else {
		json_null(&w, "stall");
	}
	if (e->postcopy) {
		json_obj_begin(&w, "postcopy");
		json_u64(&w, "after_rounds", e->postcopy_round);
		json_u64(&w, "pages", e->postcopy_pages);
		json_u64(&w, "pages_requested", e->postcopy_requested);
		json_u64(&w, "pages_served_first", e->postcopy_served);
		json_u64(&w, "faults", e->postcopy_faults);
		json_u64(&w, "worst_stall_us", e->postcopy_worst_stall_us);
		json_u64(&w, "duration_ms", e->postcopy_ms);
		json_u64(&w, "links_recovered", e->postcopy_breaks);
		json_u64(&w, "guest_rate", e->postcopy_guest_rate);
		json_obj_end(&w);
	} else {
		json_null(&w, "postcopy");
	}
	json_obj_end(&w);
	json_u64(&w, "rejected_streams", e->rejected_streams);
	json_u64(&w, "torn_pages", e->torn_pages);
	json_u64(&w, "src_cpu_ms", e->src_cpu_ms);
	json_u64(&w, "dst_cpu_ms", e->dst_cpu_ms);
	if (started)
		json_u64(&w, "switchover_timeout_ms", e->switchover_timeout_ms);
	else
		json_null(&w, "switchover_timeout_ms");
	if (held && held->held) {
		/* where the only sure copy waits for an operator */
		json_obj_begin(&w, "source_copy");
		json_str(&w, "agent", o->src);
		json_str(&w, "vm", vm);
		json_str(&w, "state", "held");
		json_str(&w, "migration", held->held_id);
		json_obj_end(&w);
	}
	json_obj_end(&w);
	json_finish(&w);
}

/* ---- a libvirt domain's summary: libvirt's figures, null where it has none ---- */

static void json_known(struct json_writer *w, const char *key, uint64_t v)
{
	if (v == MIG_LV_UNKNOWN)
		json_null(w, key);
	else
		json_u64(w, key, v);
}

static const char *lv_state_name(uint32_t st)
{
	switch (st) {
	case MIG_LV_STATE_ABSENT: return "absent";
	case MIG_LV_STATE_RUNNING: return "running";
	case MIG_LV_STATE_PAUSED: return "paused";
	case MIG_LV_STATE_SHUTOFF: return "shutoff";
	case MIG_LV_STATE_OTHER: return "other";
	default: return NULL;     /* not asked, or no answer */
	}
}

static void print_json_lv(const char *id, const struct mig_event *e, const struct start_opts *o,
			  const struct mig_start_result *m, bool started)
{
	struct json_writer w;
	bool downtime = started && (e->result == MIG_RESULT_COMPLETED ||
				    e->owner == MIG_OWNER_DESTINATION);

	json_head(&w, id, e);
	started ? json_known(&w, "setup_ms", e->setup_ms) : json_null(&w, "setup_ms");
	json_u64(&w, "prepare_ms", m->prepare_ms);
	downtime ? json_known(&w, "downtime_ms", e->downtime_ms) : json_null(&w, "downtime_ms");
	json_u64(&w, "rounds", e->round);
	json_u64(&w, "streams", started ? e->streams : o->streams);
	/* QEMU's stream is its own: none of ours shaped it */
	json_null(&w, "compression");
	json_null(&w, "checksum");
	/* the tunnel's channels (protocol.md §11) */
	if (started)
		json_str(&w, "encryption", e->encrypted ? "aes-256-gcm" : "none");
	else
		json_null(&w, "encryption");
	json_str(&w, "encrypt_requested", mig_encrypt_to_string(o->encrypt));
	started ? json_known(&w, "throughput_bps", e->throughput_bps) :
		  json_null(&w, "throughput_bps");
	json_obj_begin(&w, "ram");
	json_known(&w, "total_bytes", started ? e->ram_total_bytes : MIG_LV_UNKNOWN);
	json_known(&w, "transferred_bytes", started ? e->transferred_bytes : MIG_LV_UNKNOWN);
	/* what crossed between the agents, all channels (the tunnel's count) */
	json_u64(&w, "wire_bytes", e->wire_bytes);
	json_known(&w, "zero_pages", started ? e->zero_pages : MIG_LV_UNKNOWN);
	json_known(&w, "normal_pages", started ? e->normal_pages : MIG_LV_UNKNOWN);
	json_known(&w, "dirty_rate_bps", started ? e->dirty_rate_bps : MIG_LV_UNKNOWN);
	json_obj_end(&w);
	json_null(&w, "phases");
	json_null(&w, "devices");
	json_null(&w, "kvm_precopy");
	/* libvirt's own means: QEMU's auto-converge, or post-copy */
	json_obj_begin(&w, "convergence");
	json_str(&w, "mode", started ? conv_mode_to_string(e->converge) : NULL);
	json_str(&w, "mode_requested", conv_mode_to_string(o->converge));
	json_bool(&w, "auto_converge", o->converge == CONV_MODE_THROTTLE ||
				       o->converge == CONV_MODE_AUTO);
	json_null(&w, "max_throttle_pct");     /* QEMU's own bound: libvirt passes none */
	/* libvirt's auto_converge_throttle, the highest seen */
	started ? json_u64(&w, "throttle_pct", e->throttle_pct) : json_null(&w, "throttle_pct");
	started ? json_u64(&w, "throttle_ms", e->throttle_ms) : json_null(&w, "throttle_ms");
	json_null(&w, "guest_rate");
	json_null(&w, "guest_rate_unthrottled");
	json_null(&w, "stall");
	if (started && e->postcopy) {
		json_obj_begin(&w, "postcopy");
		json_u64(&w, "after_rounds", e->postcopy_round);
		json_null(&w, "pages");
		json_known(&w, "pages_requested", e->postcopy_requested);
		json_null(&w, "pages_served_first");
		json_null(&w, "faults");
		json_null(&w, "worst_stall_us");
		json_u64(&w, "duration_ms", e->postcopy_ms);
		json_null(&w, "links_recovered");
		json_null(&w, "guest_rate");
		json_obj_end(&w);
	} else {
		json_null(&w, "postcopy");
	}
	json_obj_end(&w);
	json_obj_begin(&w, "libvirt");
	json_str(&w, "domain", m->name[0] ? m->name : NULL);
	json_str(&w, "uuid", m->src_dom.uuid[0] ? m->src_dom.uuid :
			     m->dst_dom.uuid[0] ? m->dst_dom.uuid : NULL);
	json_bool(&w, "copy_storage", o->copy_storage);
	json_str(&w, "source_state", lv_state_name(m->src_dom.state));
	json_str(&w, "destination_state", lv_state_name(m->dst_dom.state));
	json_obj_end(&w);
	json_obj_end(&w);
	json_finish(&w);
}

static void print_summary_lv(const struct mig_start_result *m)
{
	const struct mig_event *e = &m->res;
	char v[64];

	printf("migration %s %s: domain %s now runs on the %s\n", m->id, result_name(e->result),
	       m->name, e->owner == MIG_OWNER_NONE ? "(unknown: operator needed)" :
	       owner_name(e->owner));
	if (e->error[0])
		printf("  error: %s\n", e->error);
	printf("  destination prepared in %llu ms; the tunnel %s\n",
	       (unsigned long long)m->prepare_ms,
	       e->encrypted ? "encrypted (AES-256-GCM)" : "not encrypted");
	if (e->downtime_ms == MIG_LV_UNKNOWN || e->result != MIG_RESULT_COMPLETED)
		snprintf(v, sizeof(v), "not known");
	else
		snprintf(v, sizeof(v), "%llu ms", (unsigned long long)e->downtime_ms);
	printf("  total %llu ms, downtime %s (libvirt's), %u iteration%s, %u QEMU connection%s\n",
	       (unsigned long long)e->total_ms, v, e->round, e->round == 1 ? "" : "s", e->streams,
	       e->streams == 1 ? "" : "s");
	if (e->ram_total_bytes != MIG_LV_UNKNOWN && e->transferred_bytes != MIG_LV_UNKNOWN)
		printf("  RAM %llu MiB, %llu MiB carried by QEMU, %llu MiB through the tunnel\n",
		       (unsigned long long)(e->ram_total_bytes >> 20),
		       (unsigned long long)(e->transferred_bytes >> 20),
		       (unsigned long long)(e->wire_bytes >> 20));
	if (e->throttle_pct)
		printf("  converge %s: libvirt's auto-converge throttled the vCPUs up to %u %% "
		       "for %.1f s\n", conv_mode_to_string(e->converge) ?: "?", e->throttle_pct,
		       e->throttle_ms / 1e3);
	if (e->postcopy)
		printf("  converge postcopy: the domain started on the destination after %u "
		       "memory pass%s; the rest of its memory followed in %.2f s\n",
		       e->postcopy_round, e->postcopy_round == 1 ? "" : "es", e->postcopy_ms / 1e3);
	printf("  the domain is %s on the source and %s on the destination\n",
	       lv_state_name(m->src_dom.state) ?: "unknown",
	       lv_state_name(m->dst_dom.state) ?: "unknown");
}

static void print_progress_lv(const char *id, const struct mig_event *e, bool tty,
			      uint32_t *last_phase)
{
	if (e->phase != *last_phase) {
		fprintf(stderr, "%smigration %s: %s => %s\n", tty ? "\r\033[K" : "", id,
			mig_phase_to_string(*last_phase), mig_phase_to_string(e->phase));
		*last_phase = e->phase;
	}
	if (!tty)
		return;
	fprintf(stderr, "\r\033[K%-9s iteration %u", mig_phase_to_string(e->phase), e->round);
	if (e->remaining_bytes != MIG_LV_UNKNOWN)
		fprintf(stderr, "  remaining %.1f MiB", (double)e->remaining_bytes / (1 << 20));
	if (e->dirty_rate_bps != MIG_LV_UNKNOWN)
		fprintf(stderr, "  dirty %.1f MiB/s", (double)e->dirty_rate_bps / (1 << 20));
	if (e->throughput_bps != MIG_LV_UNKNOWN)
		fprintf(stderr, "  %.0f MiB/s", (double)e->throughput_bps / (1 << 20));
	if (e->expected_downtime_ms != MIG_LV_UNKNOWN)
		fprintf(stderr, "  expected downtime %llu ms",
			(unsigned long long)e->expected_downtime_ms);
	if (e->throttle_pct)
		fprintf(stderr, "  throttle %u%%", e->throttle_pct);
	fflush(stderr);
}

/* With --json, the object for an end without the source's result. */
static void json_without_result(const char *id, const struct start_opts *o, uint32_t result,
				uint32_t owner, const char *why, uint32_t streams,
				uint64_t prepare_ms, const char *vm,
				const struct mig_start_result *held,
				const struct mig_start_result *m)
{
	struct mig_event e = { .result = result, .owner = owner, .streams = streams };

	str_copy(e.error, sizeof(e.error), why);
	if (o->json && o->libvirt)
		print_json_lv(id, &e, o, m, false);
	else if (o->json)
		print_json(id, &e, NULL, o, prepare_ms, false, vm, held);
}

/* What the operator does about a held source copy. */
static void held_hint(const struct start_opts *o, const char *vm, const struct mig_start_result *h)
{
	const char *k = o->key_file ? " --key-file " : "", *kf = o->key_file ? o->key_file : "";
	const char *ssh = cli_ssh_args();
	const char *peer = h->held_peer[0] ? h->held_peer : o->dst;

	if (!strcmp(o->src, "local")) {
		/* a private agent: it, and the copy it holds, end with us */
		fprintf(stderr, "migratectl start: VM %s was held paused by the local source agent, "
			"which ends with this command; whether it runs on the destination (%s) is "
			"unknown: check there\n", vm, peer);
		return;
	}
	fprintf(stderr, "migratectl start: VM %s is kept paused on %s, held by migration %s: it "
		"may run on the destination (%s). Check there first, then either\n"
		"  migratectl vm resume %s %s --migration %s%s%s%s    (it does not run there: run it "
		"here)\n"
		"  migratectl vm discard %s %s --migration %s%s%s%s   (it runs there: drop this copy)\n",
		vm, o->src, h->held_id, peer, o->src, vm, h->held_id, k, kf, ssh, o->src, vm,
		h->held_id, k, kf, ssh);
}

/* How the migration was made to converge: the throttle and what it cost
 * the guest, and a stall. */
static void print_convergence(const struct mig_event *res)
{
	if (res->throttle_pct)
		printf("  converge %s: vCPUs throttled up to %u %% for %.1f s; the guest made "
		       "%llu units/s of progress during precopy, %llu while not throttled\n",
		       conv_mode_to_string(res->converge) ?: "?", res->throttle_pct,
		       res->throttle_ms / 1e3, (unsigned long long)res->guest_rate,
		       (unsigned long long)res->guest_rate_free);
	if (res->stall_action)
		printf("  stalled %.1f s into precopy: what was left stopped shrinking; action %s\n",
		       res->stall_ms / 1e3, conv_stall_action_to_string(res->stall_action) ?: "?");
	if (res->postcopy)
		printf("  post-copy after %u pre-copy round%s: %llu pages came after the start in "
		       "%.2f s; the vCPUs asked for %llu (%llu faults), the longest wait %.1f ms; "
		       "the guest made %llu units/s of progress meanwhile\n",
		       res->postcopy_round, res->postcopy_round == 1 ? "" : "s",
		       (unsigned long long)res->postcopy_pages, res->postcopy_ms / 1e3,
		       (unsigned long long)res->postcopy_requested,
		       (unsigned long long)res->postcopy_faults,
		       res->postcopy_worst_stall_us / 1e3,
		       (unsigned long long)res->postcopy_guest_rate);
}

static void print_progress(const char *id, const struct mig_event *e, bool tty, uint32_t *last_phase)
{
	if (e->phase != *last_phase) {
		fprintf(stderr, "%smigration %s: %s => %s\n", tty ? "\r\033[K" : "", id,
			mig_phase_to_string(*last_phase), mig_phase_to_string(e->phase));
		*last_phase = e->phase;
	}
	if (!tty)
		return;
	fprintf(stderr, "\r\033[K%-9s round %u  remaining %.1f MiB  dirty %.1f MiB/s  "
		"%.0f MiB/s  expected downtime %llu ms", mig_phase_to_string(e->phase), e->round,
		(double)e->remaining_bytes / (1 << 20), (double)e->dirty_rate_bps / (1 << 20),
		(double)e->throughput_bps / (1 << 20), (unsigned long long)e->expected_downtime_ms);
	/* what the guest pays for the dirty log, as its host's KVM counts it */
	if (e->kvm_valid)
		fprintf(stderr, "  guest faults %llu", (unsigned long long)e->kvm_page_faults);
	/* an idle guest dirties little: a busy one is why rounds do not shrink */
	if (e->kvm_valid && e->kvm_halted_permille != MIG_KVM_HALTED_UNKNOWN)
		fprintf(stderr, "  vCPUs halted %u%%", e->kvm_halted_permille / 10);
	/* what convergence costs the guest now */
	if (e->throttle_pct)
		fprintf(stderr, "  throttle %u%%", e->throttle_pct);
	if (e->phase == MIG_PHASE_PRECOPY && e->guest_rate)
		fprintf(stderr, "  guest %.1fk/s", e->guest_rate / 1e3);
	fflush(stderr);
}

/* What the choreography reports, as the terminal shows it. */
struct start_view {
	const struct start_opts *o;
	bool tty;
	uint32_t last_phase;
};

static void on_step(void *arg, enum mig_start_step st, const struct mig_start_result *m,
		    const struct mig_event *ev)
{
	struct start_view *v = arg;
	const struct start_opts *o = v->o;

	switch (st) {
	case MIG_START_CREATING_VM:
		fprintf(stderr, "migration %s: creating lab VM %s on %s\n", m->id, m->name, o->src);
		break;
	case MIG_START_STARTED:
		fprintf(stderr, "migration %s: started, %s %s from %s to %s (cancel with: "
			"migratectl cancel %s %s%s%s%s)\n", m->id, m->libvirt ? "domain" : "VM",
			m->name, o->src, o->dst, m->src_url, m->id,
			o->key_file ? " --key-file " : "", o->key_file ? o->key_file : "",
			cli_ssh_args());
		break;
	case MIG_START_PROGRESS:
		/* Phase changes are logged on stderr even with --json: stdout
		 * carries only the JSON object. */
		if (m->libvirt)
			print_progress_lv(m->id, ev, v->tty, &v->last_phase);
		else
			print_progress(m->id, ev, v->tty, &v->last_phase);
		break;
	case MIG_START_CANCELLING:
		fprintf(stderr, "%smigration %s: cancelling\n", v->tty ? "\r\033[K" : "", m->id);
		break;
	}
}

static int check_vm(void *arg, const struct mig_vm_info *vm, char *why, size_t n)
{
	const struct start_view *v = arg;

	return check_first_round(v->o, vm->lab.mem_bytes, why, n);
}

static void print_summary(const struct start_opts *o, const struct mig_start_result *m)
{
	const struct mig_event *res = &m->res;

	printf("migration %s %s: VM %s now runs on the %s\n", m->id, result_name(res->result),
	       m->name, res->owner == MIG_OWNER_NONE ? "(unknown: operator needed)" :
	       owner_name(res->owner));
	if (res->error[0])
		printf("  error: %s\n", res->error);
	printf("  destination prepared in %llu ms\n", (unsigned long long)m->prepare_ms);
	printf("  total %llu ms (setup %llu ms), downtime %llu ms, %u round%s, %u stream%s, "
	       "%s, checksum %s, %s\n", (unsigned long long)res->total_ms,
	       (unsigned long long)res->setup_ms, (unsigned long long)res->downtime_ms, res->round,
	       res->round == 1 ? "" : "s", res->streams, res->streams == 1 ? "" : "s",
	       xport_codec_to_string(res->codec), checksum_text(res, o->checksum),
	       res->encrypted ? "encrypted (AES-256-GCM)" : "not encrypted");
	if (res->handover == MIG_HANDOVER_DONE)
		printf("  RAM handed over (same host: its memfd passed to the destination, not "
		       "copied)\n");
	else if (o->handover != MIG_HANDOVER_NEVER && res->handover != MIG_HANDOVER_UNDECIDED)
		printf("  RAM copied, not handed over: %s\n",
		       mig_handover_why_to_string(res->handover));
	printf("  RAM %llu MiB: %llu MiB carried, %llu MiB on the wire, %llu zero pages, "
	       "%llu torn (sent again), %.0f MiB/s\n",
	       (unsigned long long)(res->ram_total_bytes >> 20),
	       (unsigned long long)(res->transferred_bytes >> 20),
	       (unsigned long long)(res->wire_bytes >> 20), (unsigned long long)res->zero_pages,
	       (unsigned long long)res->torn_pages, (double)res->throughput_bps / (1 << 20));
	if (res->kvm_valid)
		printf("  KVM on the source during precopy: %llu exits, %llu page faults (dirty "
		       "logging's among them), %llu halts, %llu remote TLB flushes\n",
		       (unsigned long long)res->kvm_exits, (unsigned long long)res->kvm_page_faults,
		       (unsigned long long)res->kvm_halt_exits,
		       (unsigned long long)res->kvm_remote_tlb_flushes);
	if (res->kvm_valid && res->kvm_halted_permille != MIG_KVM_HALTED_UNKNOWN)
		printf("  its %u vCPU%s were halted %.1f %% of the time (%.1f ms asleep, %.1f ms "
		       "polling; %llu of %llu polls ended by a wakeup)\n", res->kvm_vcpus,
		       res->kvm_vcpus == 1 ? "" : "s", res->kvm_halted_permille / 10.0,
		       res->kvm_halt_wait_ns / 1e6,
		       (res->kvm_halt_poll_success_ns + res->kvm_halt_poll_fail_ns) / 1e6,
		       (unsigned long long)res->kvm_halt_successful_polls,
		       (unsigned long long)res->kvm_halt_attempted_polls);
	print_convergence(res);
	if (res->verified) {
		char a[MIG_DIGEST_HEX], b[MIG_DIGEST_HEX];

		hex128(res->digest_src, a);
		hex128(res->digest_dst, b);
		printf("  verify: RAM digest %s %s, guest passes %llu -> %llu on the destination, "
		       "%llu self-check errors\n", a, strcmp(a, b) ? "MISMATCH" : "matches",
		       (unsigned long long)res->dst_passes_before,
		       (unsigned long long)res->dst_passes_after, (unsigned long long)res->dst_errors);
	}
	/* what the devices' classes want said of them */
	for (uint32_t i = 0; i < res->nr_devices && i < MIG_EVENT_DEVICES_MAX; i++) {
		const struct mig_event_device *d = &m->devs[i];
		const struct mig_device_class *cls = mig_device_class_get(d->cls);

		if (!d->notes || !cls)
			continue;
		printf("  %s %u:", cls->name, d->id);
		for (unsigned b = 0; b < 32; b++)
			if (d->notes & (1U << b))
				printf(" %s", b < cls->nr_notes ? cls->note_names[b] : "unknown");
		printf("\n");
	}
}

int cmd_start(int argc, char **argv)
{
	struct start_opts o = { 0 };
	struct sigaction sa = { .sa_handler = on_sigint };
	struct start_view view = { .o = &o, .tty = isatty(STDERR_FILENO),
				   .last_phase = MIG_PHASE_SETUP };
	struct mig_start_opts so = { 0 };
	static struct mig_start_result m;
	int r;

	r = parse_start(argc, argv, &o);
	if (r)
		return r == 1 ? 0 : r;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	so.src = o.src;
	so.dst = o.dst;
	so.key_file = o.key_file;
	so.tunnel = o.tunnel;
	so.vm = o.vm;
	so.lab_spec = o.lab;
	so.lv_flags = o.copy_storage ? MIG_LV_F_COPY_STORAGE : 0;
	so.params = (struct mig_outgoing){
		.streams = o.streams, .codec = o.compress.codec, .level = o.compress.level,
		.verify = o.verify != 0, .checksum = o.checksum,
		.downtime_limit_ms = o.downtime_ms, .max_bandwidth_bps = o.max_bw,
		.timeout_ms = o.timeout_ms, .timeout_action = o.action,
		.switchover_timeout_ms = o.switchover_ms, .encrypt = o.encrypt,
		.converge = o.converge, .max_throttle_pct = o.max_throttle,
		.stall_action = o.stall_action, .stall_ms = o.stall_ms, .stall_bytes = o.stall_bytes,
		.handover = o.handover, .postcopy_after = o.postcopy_after,
		.recover_ms = o.recover_ms,
	};
	so.interrupted = &interrupted;
	so.check_vm = o.vm && !o.libvirt ? check_vm : NULL;
	so.on_step = on_step;
	so.arg = &view;
	mig_start(&so, &m);

	switch (m.outcome) {
	case MIG_START_RESULT:
		if (m.libvirt)
			print_progress_lv(m.id, &m.res, false, &view.last_phase);
		else
			print_progress(m.id, &m.res, false, &view.last_phase);
		if (o.json && m.libvirt)
			print_json_lv(m.id, &m.res, &o, &m, true);
		else if (o.json)
			print_json(m.id, &m.res, m.devs, &o, m.prepare_ms, true, m.name, &m);
		else if (m.libvirt)
			print_summary_lv(&m);
		else
			print_summary(&o, &m);
		if (m.held)
			held_hint(&o, m.name, &m);
		if (m.res.result == MIG_RESULT_COMPLETED)
			return 0;
		return m.res.owner == MIG_OWNER_SOURCE ? 1 : EXIT_OPERATOR;
	case MIG_START_LOST:
		/* The migration ran, and how it ended is unknown here. */
		fprintf(stderr, "%smigratectl start: %s\n", view.tty ? "\r\033[K" : "", m.why);
		if (m.held)
			held_hint(&o, m.name, &m);
		json_without_result(m.id, &o, MIG_RESULT_FAILED, MIG_OWNER_NONE, m.why, 0,
				    m.prepare_ms, m.name, m.held ? &m : NULL, &m);
		return EXIT_OPERATOR;
	case MIG_START_HELD:
		/* Nothing started, and the VM still waits for an operator. */
		fprintf(stderr, "migratectl start: %s\n", m.why);
		if (m.held)
			held_hint(&o, m.name, &m);
		json_without_result(m.id, &o, MIG_RESULT_FAILED, MIG_OWNER_NONE, m.why, o.streams,
				    m.prepare_ms, m.name, &m, &m);
		return EXIT_OPERATOR;
	case MIG_START_NOT_STARTED:
		break;
	}
	fprintf(stderr, "migratectl start: %s\n", m.why);
	json_without_result(m.id, &o, m.cancelled ? MIG_RESULT_CANCELLED : MIG_RESULT_FAILED,
			    MIG_OWNER_SOURCE, m.why, o.streams, m.prepare_ms, m.name, NULL, &m);
	return m.usage ? EXIT_USAGE : 1;
}
