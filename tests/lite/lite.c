// SPDX-License-Identifier: MIT
/*
 * The lite harness's main() (criterion/criterion.h beside it): runs every
 * registered test in a child of its own, in the order of registration, and
 * counts.  A test passes when its child exits 0 (or dies of the signal it
 * declares), is skipped when it calls cr_skip_test(), and fails otherwise,
 * including past its timeout.  The last line is "lite: N passed, N failed,
 * N skipped"; the status is 1 when any failed, 77 when every test was
 * skipped, 0 otherwise.  An argument runs only the tests whose
 * "suite::name" contains it.
 */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define LITE_TIMEOUT_S 120
#define LITE_SKIP_STATUS 3     /* the child's exit status for a skip */

static struct lite_test *head, **tail = &head;
static bool expect_failed;

void lite_register(struct lite_test *t)
{
	*tail = t;
	tail = &t->next;
}

void lite_fail(bool fatal, const char *file, int line, const char *expr, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s:%d: %s: %s", file, line, fatal ? "assertion failed" :
		"expectation failed", expr);
	if (strcmp(fmt, " ")) {
		fputc(':', stderr);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
	}
	fputc('\n', stderr);
	fflush(stderr);
	if (fatal)
		_exit(1);
	expect_failed = true;
}

void lite_skip(const char *fmt, ...)
{
	va_list ap;

	fputs("skipped: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
	_exit(LITE_SKIP_STATUS);
}

void lite_log(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* 0 passed, 1 failed, 2 skipped; why into msg. */
static int run_one(const struct lite_test *t, char *msg, size_t len)
{
	const struct lite_opts *o = t->opts;
	unsigned secs = o->timeout > 0 ? (unsigned)o->timeout + 1 : LITE_TIMEOUT_S;
	int status;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		snprintf(msg, len, "fork: %m");
		return 1;
	}
	if (!pid) {
		alarm(secs);
		if (o->init)
			o->init();
		t->fn();
		if (o->fini)
			o->fini();
		fflush(NULL);
		_exit(expect_failed ? 1 : o->exit_code);
	}
	if (waitpid(pid, &status, 0) < 0) {
		snprintf(msg, len, "waitpid: %m");
		return 1;
	}
	if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);

		if (sig == o->signal)
			return 0;
		if (sig == SIGALRM)
			snprintf(msg, len, "timed out after %u s", secs);
		else
			snprintf(msg, len, "killed by signal %d (%s)", sig, strsignal(sig));
		return 1;
	}
	if (o->signal) {
		snprintf(msg, len, "exited (status %d) instead of dying of signal %d (%s)",
			 WEXITSTATUS(status), o->signal, strsignal(o->signal));
		return 1;
	}
	if (WEXITSTATUS(status) == LITE_SKIP_STATUS)
		return 2;
	if (WEXITSTATUS(status) != o->exit_code) {
		snprintf(msg, len, "exit status %d", WEXITSTATUS(status));
		return 1;
	}
	return 0;
}

int main(int argc, char *argv[])
{
	unsigned n[3] = { 0 };
	static const char *const word[] = { "PASS", "FAIL", "SKIP" };

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (const struct lite_test *t = head; t; t = t->next) {
		char full[256], msg[256] = "";
		int r;

		snprintf(full, sizeof(full), "%s::%s", t->suite, t->name);
		if ((argc > 1 && !strstr(full, argv[1])) || t->opts->disabled)
			continue;
		r = run_one(t, msg, sizeof(msg));
		n[r]++;
		printf("[%s] %s%s%s\n", word[r], full, *msg ? ": " : "", msg);
	}
	printf("lite: %u passed, %u failed, %u skipped\n", n[0], n[1], n[2]);
	if (n[1])
		return 1;
	return n[0] ? 0 : 77;
}
