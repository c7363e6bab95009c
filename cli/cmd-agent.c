// SPDX-License-Identifier: MIT
/* migratectl agent --listen URL [--key-file F] [--socket-group GROUP] [--journal F]
 * (the listening socket from a service manager, LISTEN_FDS, when it passes one) */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <migrate/agent.h>
#include <migrate/parse.h>
#include <migrate/policy.h>

#include "cli.h"

#define AGENT_USAGE "usage: migratectl agent --listen tcp://HOST:PORT|unix:///PATH [--key-file F] " \
		    "[--socket-group GROUP] [--host-profile SPEC] [--journal FILE] [--chaos]\n" \
		    "       [--libvirt URI [--libvirt-run-dir DIR] [--libvirt-qemu-user USER]]"

/* A group name, or a numeric gid (which need not have a name). */
static int parse_group(const char *s, gid_t *ret)
{
	struct group gr, *res = NULL;
	char buf[4096];
	uint64_t v;

	if (parse_u64(s, 0, (gid_t)-2, &v) == 0) {
		*ret = (gid_t)v;
		return 0;
	}
	if (getgrnam_r(s, &gr, buf, sizeof(buf), &res) != 0 || !res)
		return -ENOENT;
	*ret = res->gr_gid;
	return 0;
}

/* A --listen the agent can listen on, checked as the other commands check
 * their endpoints: a malformed one is exit 2, before anything listens. */
static int check_listen(const char *arg, size_t cap)
{
	struct mig_error err = { 0 };
	struct xport_endpoint ep;

	if (xport_endpoint_parse(arg, &ep, &err) < 0) {
		fprintf(stderr, "migratectl agent: --listen: %s\n", err.msg);
		return EXIT_USAGE;
	}
	if (ep.kind != XPORT_EP_TCP && ep.kind != XPORT_EP_UNIX) {
		fprintf(stderr, "migratectl agent: --listen: an agent listens on tcp://HOST:PORT "
			"or unix:///PATH, not on %s\n", ep.kind == XPORT_EP_LOCAL ?
			"\"local\" (a client's word for a private agent it starts)" :
			"ssh:// (a client's way to reach an agent on another host)");
		return EXIT_USAGE;
	}
	/* Cut short, it would be another endpoint. */
	if (strlen(arg) >= cap) {
		fprintf(stderr, "migratectl agent: --listen is %zu characters; at most %zu are "
			"allowed\n", strlen(arg), cap - 1);
		return EXIT_USAGE;
	}
	return 0;
}

/* A path option into buf, or exit 2 for one too long to keep. */
static int path_opt(const char *opt, const char *arg, char *buf, size_t cap)
{
	if (strlen(arg) >= cap) {
		fprintf(stderr, "migratectl agent: --%s: the path is %zu characters; at most %zu "
			"are allowed\n", opt, strlen(arg), cap - 1);
		return EXIT_USAGE;
	}
	snprintf(buf, cap, "%s", arg);
	return 0;
}

/*
 * The listening socket a service manager passed, as systemd passes it
 * (sd_listen_fds(3)), read here in a few lines rather than with libsystemd:
 * LISTEN_PID names the process the sockets are for and LISTEN_FDS counts
 * them from fd 3 on; LISTEN_FDNAMES names them.  Variables meant for another
 * process (a LISTEN_PID that is not ours) are ignored, as the contract says.
 * The variables are unset either way, so nothing the agent starts takes
 * them for its own.  Returns 1 with o->listen_fd set, 0 for none, or -1
 * (printed) for variables that are ours but wrong.
 */
static int inherited_listener(struct agent_opts *o)
{
	const char *pid_s = getenv("LISTEN_PID"), *fds_s = getenv("LISTEN_FDS");
	const char *names = getenv("LISTEN_FDNAMES");
	uint64_t pid, n;
	int r = 0, fl;

	if (!pid_s)
		goto out;
	if (parse_u64(pid_s, 1, INT32_MAX, &pid) < 0) {
		fprintf(stderr, "migratectl agent: LISTEN_PID=%s is not a process id (the "
			"service manager's socket activation sets it)\n", pid_s);
		r = -1;
		goto out;
	}
	if ((pid_t)pid != getpid() || !fds_s)
		goto out;
	if (parse_u64(fds_s, 0, 1024, &n) < 0 || n > 1) {
		fprintf(stderr, "migratectl agent: LISTEN_FDS=%s: the agent serves exactly one "
			"socket passed by its service manager; give its .socket unit one "
			"ListenStream=\n", fds_s);
		r = -1;
		goto out;
	}
	if (n == 0)
		goto out;
	fl = fcntl(3, F_GETFD);
	if (fl < 0) {
		fprintf(stderr, "migratectl agent: LISTEN_FDS=1 but fd 3 is not open: %s\n",
			strerror(errno));
		r = -1;
		goto out;
	}
	(void)fcntl(3, F_SETFD, fl | FD_CLOEXEC);
	o->listen_fd = 3;
	o->listen_fd_set = true;
	if (names)
		snprintf(o->listen_fd_name, sizeof(o->listen_fd_name), "%.*s",
			 (int)strcspn(names, ":"), names);
	r = 1;
out:
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return r;
}

/* The agent's log: stderr, a line each. */
static void log_line(void *arg, const char *line)
{
	(void)arg;
	fprintf(stderr, "migratectl agent: %s\n", line);
}

int cmd_agent(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "key-file", required_argument, NULL, 'k' },
		{ "socket-group", required_argument, NULL, 'g' },
		{ "ready-fd", required_argument, NULL, 'r' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "host-profile", required_argument, NULL, 'p' },
		{ "journal", required_argument, NULL, 'J' },
		{ "chaos", no_argument, NULL, 'C' },
		{ "libvirt", required_argument, NULL, 'V' },
		{ "libvirt-run-dir", required_argument, NULL, 'D' },
		{ "libvirt-qemu-user", required_argument, NULL, 'U' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct agent_opts o = { .ready_fd = -1, .log = log_line };
	struct mig_error err = { 0 };
	struct cli_seen seen = { 0 };
	struct compat_profile profile;
	const char *profile_spec = NULL;
	uint64_t v;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (cli_once("agent", opts, c, &seen))
			return EXIT_USAGE;
		switch (c) {
		case 'l':
			if (check_listen(optarg, sizeof(o.listen)))
				return EXIT_USAGE;
			snprintf(o.listen, sizeof(o.listen), "%s", optarg);
			break;
		case 'k':
			if (path_opt("key-file", optarg, o.key_file, sizeof(o.key_file)))
				return EXIT_USAGE;
			break;
		case 'J':
			if (path_opt("journal", optarg, o.journal, sizeof(o.journal)))
				return EXIT_USAGE;
			break;
		case 'g':
			if (parse_group(optarg, &o.socket_group) < 0) {
				fprintf(stderr, "migratectl agent: --socket-group: no group '%s' "
					"(give a group name or a numeric gid)\n", optarg);
				return EXIT_USAGE;
			}
			o.socket_group_set = true;
			break;
		case 'r':
			if (parse_u64(optarg, 0, 65535, &v) < 0) {
				fprintf(stderr, "migratectl agent: invalid --ready-fd '%s'\n", optarg);
				return EXIT_USAGE;
			}
			o.ready_fd = (int)v;
			break;
		case 'q':
			o.log = NULL;
			break;
		case 'C':
			o.chaos = true;
			break;
		case 'V':
			if (path_opt("libvirt", optarg, o.libvirt_uri, sizeof(o.libvirt_uri)))
				return EXIT_USAGE;
			break;
		case 'D':
			/* a unix socket's path holds 107 bytes: the directory
			 * leaves room for a migration's name and a socket's */
			if (path_opt("libvirt-run-dir", optarg, o.libvirt_run_dir, 81))
				return EXIT_USAGE;
			if (optarg[0] != '/') {
				fprintf(stderr, "migratectl agent: --libvirt-run-dir must be an "
					"absolute path (the same on every host)\n");
				return EXIT_USAGE;
			}
			break;
		case 'U':
			if (path_opt("libvirt-qemu-user", optarg, o.libvirt_qemu_user,
				     sizeof(o.libvirt_qemu_user)))
				return EXIT_USAGE;
			break;
		case 'p':
			if (compat_profile_parse(optarg, &profile, &err) < 0) {
				fprintf(stderr, "migratectl agent: --host-profile: %s\n", err.msg);
				return EXIT_USAGE;
			}
			profile_spec = optarg;
			break;
		case 'h':
			puts(AGENT_USAGE);
			return 0;
		default:
			fputs(AGENT_USAGE "\n", stderr);
			return EXIT_USAGE;
		}
	}
	if (!o.listen[0] || optind < argc) {
		fputs("migratectl agent: --listen tcp://HOST:PORT or unix:///PATH is required\n", stderr);
		return EXIT_USAGE;
	}
	/* A socket from the service manager: --listen names its kind and address. */
	if (inherited_listener(&o) < 0)
		return EXIT_USAGE;
	/* The key is configuration: a file it cannot use is exit 2, like a bad
	 * option, before anything listens. */
	if (o.key_file[0] && cli_check_key_file("agent", o.key_file))
		return EXIT_USAGE;
	/* So is a journal it could not append to: found now, not at the first vCPU. */
	if (o.journal[0]) {
		int fd = open(o.journal, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);

		if (fd < 0) {
			fprintf(stderr, "migratectl agent: --journal %s: %s (give a file this user "
				"may create or append to)\n", o.journal, strerror(errno));
			return EXIT_USAGE;
		}
		close(fd);
	}
	/* What its policies see of this host instead of what its KVM says
	 * (docs/policies.md): set once, before anything is served. */
	if (profile_spec) {
		compat_profile_set(&profile);
		if (o.log)
			fprintf(stderr, "migratectl agent: host profile %s: compatibility checks "
				"and descriptions see this host as so described, not as its KVM "
				"says\n", profile_spec);
	}
	if (agent_run(&o, &err) < 0) {
		fprintf(stderr, "migratectl agent: %s\n", err.msg);
		return err.code == -EINVAL ? EXIT_USAGE : 1;
	}
	return 0;
}
