// SPDX-License-Identifier: MIT
/*
 * migratectl hook [--config FILE] DOMAIN OP SUBOP EXTRA: libvirt's qemu
 * hook (docs/libvirt.md), run by libvirtd from
 * /etc/libvirt/hooks/qemu.d/ with the domain XML on stdin.
 *
 * libvirt waits for a hook without a deadline while it holds the domain's
 * job, so this one keeps its own over everything it does (a timer that
 * ends the process, since mig_client_open's handshake has a fixed 10 s
 * wait of its own), and a missing or silent agent lets the domain through
 * unless the site asked for strict.  A non-zero exit at `reconnect` would
 * have libvirt kill a running QEMU: that op always exits 0.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <migrate/agent.h>
#include <migrate/lv-hook.h>
#include <migrate/wire-order.h>

#include "cli.h"
#include "util.h"

#define XML_MAX_S "65448"
_Static_assert(MIG_HOOK_XML_MAX == 65448, "XML_MAX_S says MIG_HOOK_XML_MAX");

/* What the timer's handler writes and how it exits (set before it is armed). */
static char deadline_line[512];
static size_t deadline_len;
static int deadline_exit;

static void deadline_hit(int sig)
{
	(void)sig;
	if (write(STDERR_FILENO, deadline_line, deadline_len) < 0)
		_exit(deadline_exit);
	_exit(deadline_exit);
}

struct hook_run {
	const char *domain, *conf_path;
	int op;                   /* enum mig_hook_op */
	uint32_t subop;
	struct lvh_conf conf;
	uint64_t t0_ms;
};

/* The exit for a call that could not be checked or journaled: through,
 * unless strict; never non-zero at reconnect. */
static int let_through(const struct hook_run *h)
{
	return h->conf.strict && h->op != MIG_HOOK_RECONNECT ? 1 : 0;
}

static const char *outcome(const struct hook_run *h)
{
	if (let_through(h))
		return "refused, as strict = yes asks";
	return h->op == MIG_HOOK_MIGRATE || h->op == MIG_HOOK_RESTORE ?
		"let through unchecked" : "let through unjournaled";
}

static int arm_deadline(struct hook_run *h)
{
	struct itimerval it = { 0 };
	struct sigaction sa = { .sa_handler = deadline_hit };
	int n;

	n = snprintf(deadline_line, sizeof(deadline_line), "migratectl: hook %s of domain %s: "
		     "no answer from the agent at %s within %llu ms (timeout in %s); %s\n",
		     mig_hook_op_to_string(h->op), h->domain, h->conf.agent,
		     (unsigned long long)h->conf.timeout_ms, h->conf_path, outcome(h));
	deadline_len = n > 0 && (size_t)n < sizeof(deadline_line) ? (size_t)n :
		       sizeof(deadline_line) - 1;
	deadline_exit = let_through(h);
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGALRM, &sa, NULL) < 0)
		return -errno;
	it.it_value.tv_sec = (time_t)(h->conf.timeout_ms / 1000);
	it.it_value.tv_usec = (suseconds_t)(h->conf.timeout_ms % 1000 * 1000);
	return setitimer(ITIMER_REAL, &it, NULL) < 0 ? -errno : 0;
}

/* stdin, at most MIG_HOOK_XML_MAX bytes: -E2BIG past it. */
static int read_xml(char **ret, size_t *ret_len)
{
	size_t cap = MIG_HOOK_XML_MAX + 1, len = 0;
	char *buf = malloc(cap + 1);
	ssize_t n;

	if (!buf)
		return -ENOMEM;
	while (len < cap && (n = read(STDIN_FILENO, buf + len, cap - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			free(buf);
			return -errno;
		}
		len += (size_t)n;
	}
	if (len > MIG_HOOK_XML_MAX) {
		free(buf);
		return -E2BIG;
	}
	buf[len] = '\0';
	*ret = buf;
	*ret_len = len;
	return 0;
}

static int remaining_ms(const struct hook_run *h)
{
	uint64_t spent = mig_now_ms() - h->t0_ms;

	return spent >= h->conf.timeout_ms ? 1 : (int)(h->conf.timeout_ms - spent);
}

/* The call to the agent: 0 and its verdict, or -errno said on stderr. */
static int ask_agent(struct hook_run *h, const char *xml, size_t len, bool check,
		     struct mig_hook_verdict *v)
{
	struct mig_hook_call c = { .op = (uint32_t)h->op, .subop = h->subop,
				   .flags = check ? MIG_HOOK_F_CHECK : 0, .xml_len = (uint32_t)len };
	struct mig_error err = { 0 };
	struct mig_client cl;
	struct mig_buf body = { 0 }, extra = { 0 };
	int r;

	str_copy(c.domain, sizeof(c.domain), h->domain);
	mig_wire_le(&mig_wl_hook_call, &c, 1);
	r = mig_client_open(h->conf.agent, h->conf.key_file[0] ? h->conf.key_file : NULL, &cl,
			    &err);
	if (r < 0) {
		fprintf(stderr, "migratectl: hook %s of domain %s: no agent: %s; %s\n",
			mig_hook_op_to_string(h->op), h->domain, err.msg, outcome(h));
		return r;
	}
	if (mig_buf_append(&body, &c, sizeof(c)) < 0 || mig_buf_append(&body, xml, len) < 0) {
		r = mig_error_set(&err, -ENOMEM, "out of memory");
	} else {
		r = mig_client_call_within(&cl, MIG_OP_HOOK, body.data, body.len, &extra,
					   remaining_ms(h), &err);
		if (r >= 0 && extra.len != sizeof(*v))
			r = mig_error_set(&err, -EPROTO, "the agent's answer is no hook verdict");
	}
	if (r < 0) {
		fprintf(stderr, "migratectl: hook %s of domain %s: the agent at %s: %s; %s\n",
			mig_hook_op_to_string(h->op), h->domain, h->conf.agent, err.msg, outcome(h));
	} else {
		memcpy(v, extra.data, sizeof(*v));
		mig_wire_le(&mig_wl_hook_verdict, v, 1);
		v->host[sizeof(v->host) - 1] = v->msg[sizeof(v->msg) - 1] = '\0';
	}
	mig_buf_free(&body);
	mig_buf_free(&extra);
	mig_client_close(&cl);
	return r;
}

static int hook_run(struct hook_run *h)
{
	bool filters = h->op == MIG_HOOK_MIGRATE || h->op == MIG_HOOK_RESTORE;
	bool check = filters && h->subop == MIG_HOOK_SUB_BEGIN, changed = false;
	struct mig_hook_verdict v;
	struct mig_error err = { 0 };
	char *xml = NULL, *out = NULL;
	size_t len = 0, out_len = 0;
	int r = read_xml(&xml, &len);

	if (r < 0) {
		/* a domain too big to check is no reason to stop it moving */
		fprintf(stderr, "migratectl: hook %s of domain %s: %s; %s\n",
			mig_hook_op_to_string(h->op), h->domain, r == -E2BIG ?
			"the domain XML on stdin is over " XML_MAX_S " bytes, more than this hook "
			"carries" : strerror(-r), outcome(h));
		return let_through(h);
	}
	if (filters) {
		r = lvh_rewrite(xml, len, &h->conf.rules, &out, &out_len, &changed, &err);
		if (r < 0) {
			fprintf(stderr, "migratectl: hook %s of domain %s: %s\n",
				mig_hook_op_to_string(h->op), h->domain, err.msg);
			free(xml);
			return 1;
		}
	}
	r = ask_agent(h, out ? out : xml, out ? out_len : len, check, &v);
	if (r < 0) {
		r = let_through(h);
	} else if (check && v.status < 0) {
		fprintf(stderr, "migratectl: host %s cannot take domain %s: %s", v.host, h->domain,
			v.msg);
		if (v.refused > 1)
			fprintf(stderr, " (and %u more: see the agent's log)", v.refused - 1);
		fputc('\n', stderr);
		r = 1;
	} else {
		r = 0;
		if (changed && fwrite(out, 1, out_len, stdout) != out_len)
			r = 1;
	}
	free(xml);
	free(out);
	return r;
}

static uint32_t subop_of(const char *s)
{
	return !strcmp(s, "begin") ? MIG_HOOK_SUB_BEGIN : !strcmp(s, "end") ? MIG_HOOK_SUB_END :
	       MIG_HOOK_SUB_OTHER;
}

int cmd_hook(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct hook_run h = { .conf_path = LVH_CONF_DEFAULT, .t0_ms = mig_now_ms() };
	struct mig_error err = { 0 };
	struct cli_seen seen = { 0 };
	bool conf_given = false;
	int c;

	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		if (cli_once("hook", opts, c, &seen))
			return EXIT_USAGE;
		if (c == 'c') {
			h.conf_path = optarg;
			conf_given = true;
		} else {
			fputs("usage: migratectl hook [--config FILE] DOMAIN OP SUBOP EXTRA\n"
			      "  libvirt's qemu hook: install as /etc/libvirt/hooks/qemu.d/50-migratectl\n"
			      "  (contrib/libvirt/install.sh); see docs/libvirt.md\n",
			      c == 'h' ? stdout : stderr);
			return c == 'h' ? 0 : EXIT_USAGE;
		}
	}
	if (argc - optind != 4) {
		fprintf(stderr, "migratectl hook: expected DOMAIN OP SUBOP EXTRA, as libvirt "
			"passes them (got %d arguments)\n", argc - optind);
		return EXIT_USAGE;
	}
	h.domain = argv[optind];
	h.op = mig_hook_op_from_string(argv[optind + 1]);
	h.subop = subop_of(argv[optind + 2]);
	if (h.op < 0)   /* an operation this hook has nothing to do at */
		return 0;
	lvh_conf_init(&h.conf);
	if (lvh_conf_load(h.conf_path, conf_given, &h.conf, &err) < 0) {
		fprintf(stderr, "migratectl: hook %s of domain %s: bad configuration: %s\n",
			argv[optind + 1], h.domain, err.msg);
		return h.op == MIG_HOOK_RECONNECT ? 0 : 1;
	}
	if (arm_deadline(&h) < 0) {
		fprintf(stderr, "migratectl: hook: cannot arm its deadline: %s\n", strerror(errno));
		return let_through(&h);
	}
	return hook_run(&h);
}
