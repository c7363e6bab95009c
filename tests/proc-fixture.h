/* SPDX-License-Identifier: MIT */
/* Helpers for tests that run migratectl processes: commands, agents, JSON fields. */
#ifndef TESTS_PROC_FIXTURE_H
#define TESTS_PROC_FIXTURE_H

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct run_result {
	int status;
	char out[16384];
	char err[16384];
};

static inline void proc_slurp(const char *path, char *buf, size_t n)
{
	FILE *f = fopen(path, "r");
	size_t got;

	buf[0] = '\0';
	if (!f)
		return;
	got = fread(buf, 1, n - 1, f);
	buf[got] = '\0';
	fclose(f);
}

/* A loopback TCP port nobody listened on a moment ago. */
static inline int proc_free_port(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	close(fd);
	return ntohs(sin.sin_port);
}

/* Runs `migratectl ARGS`, capturing stdout, stderr and the exit status. */
static inline void proc_run(const char *args, struct run_result *r)
{
	char out[] = "/tmp/migratectl-test-XXXXXX", err[] = "/tmp/migratectl-test-XXXXXX";
	char cmd[2048];
	int fo = mkstemp(out), fe = mkstemp(err), st;

	cr_assert(fo >= 0 && fe >= 0);
	close(fo);
	close(fe);
	snprintf(cmd, sizeof(cmd), "%s %s >%s 2>%s </dev/null", MIGRATECTL_PATH, args, out, err);
	st = system(cmd);
	cr_assert(WIFEXITED(st), "migratectl did not exit normally: %s", args);
	r->status = WEXITSTATUS(st);
	proc_slurp(out, r->out, sizeof(r->out));
	proc_slurp(err, r->err, sizeof(r->err));
	unlink(out);
	unlink(err);
}

/* Starts `migratectl agent` in the background, with a --host-profile when
 * profile is not NULL and a --journal when journal is not NULL. */
static inline pid_t proc_agent_journal(const char *listen, const char *key_file,
				       const char *profile, const char *journal)
{
	pid_t pid = fork();

	cr_assert(pid >= 0);
	if (pid == 0) {
		const char *argv[12] = { "migratectl", "agent", "--listen", listen, "--quiet" };
		int n = 5;

		/* never outlive a test that failed before stopping us */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (key_file) {
			argv[n++] = "--key-file";
			argv[n++] = key_file;
		}
		if (profile) {
			argv[n++] = "--host-profile";
			argv[n++] = profile;
		}
		if (journal) {
			argv[n++] = "--journal";
			argv[n++] = journal;
		}
		execv(MIGRATECTL_PATH, (char *const *)argv);
		_exit(127);
	}
	return pid;
}

static inline pid_t proc_agent_profile(const char *listen, const char *key_file,
				       const char *profile)
{
	return proc_agent_journal(listen, key_file, profile, NULL);
}

static inline pid_t proc_agent(const char *listen, const char *key_file)
{
	return proc_agent_profile(listen, key_file, NULL);
}

static inline void proc_stop(pid_t pid)
{
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
}

/* Waits until `vm list ENDPOINT` answers (the agent is up). */
static inline void proc_wait_agent(const char *endpoint, const char *key_opt)
{
	struct run_result r;
	char args[512];

	snprintf(args, sizeof(args), "vm list %s %s", endpoint, key_opt ? key_opt : "");
	for (int i = 0; i < 100; i++) {
		proc_run(args, &r);
		if (r.status == 0)
			return;
		usleep(50000);
	}
	cr_assert_fail("agent at %s never answered: %s", endpoint, r.err);
}

/* Two unix agents, a source and a destination, in a directory of their
 * own; each with a --host-profile where one is given (NULL: none), and
 * with proc_pair_start(..., true) each with a --journal file there. */
struct proc_pair {
	char dir[64];
	char src[128], dst[128];
	char src_journal[96], dst_journal[96];   /* "" without journals */
	pid_t a, b;
};

static inline void proc_pair_start(struct proc_pair *t, const char *src_profile,
				   const char *dst_profile, bool journals)
{
	snprintf(t->dir, sizeof(t->dir), "/tmp/migratectl-test-XXXXXX");
	cr_assert_not_null(mkdtemp(t->dir));
	snprintf(t->src, sizeof(t->src), "unix://%s/src.sock", t->dir);
	snprintf(t->dst, sizeof(t->dst), "unix://%s/dst.sock", t->dir);
	t->src_journal[0] = t->dst_journal[0] = '\0';
	if (journals) {
		snprintf(t->src_journal, sizeof(t->src_journal), "%s/src.journal", t->dir);
		snprintf(t->dst_journal, sizeof(t->dst_journal), "%s/dst.journal", t->dir);
	}
	t->a = proc_agent_journal(t->src, NULL, src_profile, journals ? t->src_journal : NULL);
	t->b = proc_agent_journal(t->dst, NULL, dst_profile, journals ? t->dst_journal : NULL);
	proc_wait_agent(t->src, NULL);
	proc_wait_agent(t->dst, NULL);
}

static inline void proc_pair_up(struct proc_pair *t, const char *src_profile,
				const char *dst_profile)
{
	proc_pair_start(t, src_profile, dst_profile, false);
}

/* SIGKILL both agents, and leave their files to read (proc_pair_down()
 * after). */
static inline void proc_pair_down_keep(struct proc_pair *t)
{
	proc_stop(t->a);
	proc_stop(t->b);
	t->a = t->b = 0;
}

/* Waits (10 s at most) until agent ep lists no migration: an agent frees a
 * failed migration's VM name with its record, a little after the start
 * that ran it has returned. */
static inline void proc_wait_no_migrations(const char *ep, const char *key_opt)
{
	struct run_result r;
	char args[256];

	snprintf(args, sizeof(args), "migrations %s --json %s", ep, key_opt ? key_opt : "");
	for (int i = 0; i < 100; i++) {
		proc_run(args, &r);
		if (!strcmp(r.out, "[]\n"))
			return;
		usleep(100000);
	}
	cr_assert_fail("%s still lists a migration: %s", ep, r.out);
}

static inline void proc_pair_down(struct proc_pair *t)
{
	char p[160];

	proc_stop(t->a);
	proc_stop(t->b);
	snprintf(p, sizeof(p), "%s/src.sock", t->dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/dst.sock", t->dir);
	unlink(p);
	if (t->src_journal[0])
		unlink(t->src_journal);
	if (t->dst_journal[0])
		unlink(t->dst_journal);
	rmdir(t->dir);
}

/* The text of "key": value in JSON (number, string or literal), or NULL. */
static inline const char *json_field(const char *json, const char *key, char *buf, size_t n)
{
	char pat[96];
	const char *p;
	size_t i = 0;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(json, pat);
	if (!p)
		return NULL;
	p += strlen(pat);
	if (*p == '"') {
		p++;
		while (*p && *p != '"' && i + 1 < n)
			buf[i++] = *p++;
	} else {
		while (*p && *p != ',' && *p != '}' && *p != ']' && i + 1 < n)
			buf[i++] = *p++;
	}
	buf[i] = '\0';
	return buf;
}

static inline double json_num(const char *json, const char *key)
{
	char buf[64];

	cr_assert_not_null(json_field(json, key, buf, sizeof(buf)), "no \"%s\" in %s", key, json);
	return strtod(buf, NULL);
}

static inline void json_expect_str(const char *json, const char *key, const char *want)
{
	char buf[256];

	cr_assert_not_null(json_field(json, key, buf, sizeof(buf)), "no \"%s\" in %s", key, json);
	cr_assert_str_eq(buf, want, "\"%s\" is %s, want %s; output: %s", key, buf, want, json);
}

/* `migratectl ARGS` must exit 2 naming the problem, with nothing on stdout. */
static inline void proc_expect_usage(const char *args, const char *needle)
{
	struct run_result r;

	proc_run(args, &r);
	cr_assert_eq(r.status, 2, "'%s' exited %d, want 2 (stderr: %s)", args, r.status, r.err);
	cr_assert_not_null(strstr(r.err, needle), "'%s': stderr lacks '%s': %s", args, needle, r.err);
	cr_assert_eq(r.out[0], '\0', "'%s' printed to stdout: %s", args, r.out);
}

/* A unix agent in DIR (its endpoint into ep) hosting a 512 MiB lab VM NAME. */
static inline pid_t proc_agent_with_lab(const char *dir, const char *sock, const char *name,
					const char *spec, char *ep, size_t n)
{
	struct run_result r;
	char args[512];
	pid_t pid;

	snprintf(ep, n, "unix://%s/%s", dir, sock);
	pid = proc_agent(ep, NULL);
	proc_wait_agent(ep, NULL);
	snprintf(args, sizeof(args), "vm create %s --name %s --lab %s", ep, name, spec);
	proc_run(args, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);
	return pid;
}

static inline pid_t proc_agent_with_vm(const char *dir, const char *sock, const char *name,
				       char *ep, size_t n)
{
	return proc_agent_with_lab(dir, sock, name, "mem=512M,vcpus=1,wss=16M", ep, n);
}

/* The guest of the one VM at agent EP runs there, making progress (within 10 s: its first pass
 * after a rollback faults on every page), its self-check clean. */
static inline void proc_expect_vm_runs(const char *ep)
{
	struct run_result r;
	char args[256];
	double p0;

	snprintf(args, sizeof(args), "vm list %s --json", ep);
	proc_run(args, &r);
	cr_assert_not_null(strstr(r.out, "\"state\":\"running\""), "%s", r.out);
	p0 = json_num(r.out, "passes");
	for (int i = 0; i < 100; i++) {
		usleep(100000);
		proc_run(args, &r);
		if (json_num(r.out, "passes") > p0)
			break;
	}
	cr_assert_gt(json_num(r.out, "passes"), p0, "the source guest is not running: %s", r.out);
	cr_assert_eq(json_num(r.out, "selfcheck_errors"), 0);
}

/* Runs `migratectl ARGS` in the background with stdout and stderr in DIR/out
 * and DIR/err, in a process group of its own (as a shell's job). */
static inline pid_t proc_start_background(const char *dir, const char *args)
{
	char cmd[768];
	pid_t pid;

	snprintf(cmd, sizeof(cmd), "exec %s %s >%s/out 2>%s/err", MIGRATECTL_PATH, args, dir, dir);
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		setpgid(0, 0);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Waits for it; collects (and removes) DIR/out and DIR/err; returns the exit status. */
static inline int proc_finish_background(const char *dir, pid_t pid, struct run_result *r)
{
	char path[160];
	int st;

	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st));
	snprintf(path, sizeof(path), "%s/out", dir);
	proc_slurp(path, r->out, sizeof(r->out));
	unlink(path);
	snprintf(path, sizeof(path), "%s/err", dir);
	proc_slurp(path, r->err, sizeof(r->err));
	unlink(path);
	return WEXITSTATUS(st);
}

/* The background migration's id, from its first line in DIR/err. */
static inline void proc_background_id(const char *dir, char id[37])
{
	char path[160], log[16384];
	const char *p;

	snprintf(path, sizeof(path), "%s/err", dir);
	proc_slurp(path, log, sizeof(log));
	p = strstr(log, "migration ");
	cr_assert_not_null(p, "%s", log);
	memcpy(id, p + 10, 36);
	id[36] = '\0';
}

/* Waits for the phase log's `arrow` ("setup => precopy"), then `settle_ms`. */
static inline void proc_wait_phase(const char *dir, const char *arrow, int settle_ms)
{
	char path[160], log[16384];

	snprintf(path, sizeof(path), "%s/err", dir);
	for (int i = 0; i < 1500; i++) {
		proc_slurp(path, log, sizeof(log));
		if (strstr(log, arrow)) {
			usleep((useconds_t)settle_ms * 1000);
			return;
		}
		usleep(20000);
	}
	cr_assert_fail("the migration never logged '%s': %s", arrow, log);
}

static inline void make_key_file(const char *path, unsigned char fill)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f);
	for (int i = 0; i < 32; i++)
		fputc(fill + i, f);
	fclose(f);
	chmod(path, 0600);
}

#endif
