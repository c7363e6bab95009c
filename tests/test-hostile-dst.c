// SPDX-License-Identifier: MIT
/*
 * The source under a hostile destination: a real agent migrates a real lab
 * VM, and this test plays the destination.  It takes the streams, the pages
 * and the device state as a destination would, then misbehaves at one step:
 * it closes, sends garbage, sends ABORT or stalls, before LOADED, after
 * COMMIT, or after RUNNING kind 1.  Before COMMIT the source must take its
 * VM back and run it; after COMMIT, until the destination has confirmed the
 * guest runs there (RUNNING kind 2), it must keep the VM paused and held,
 * whatever the destination says, and only an operator's resume or discard
 * naming the migration may change that.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include <migrate/agent.h>
#include <migrate/engine.h>

#include "lab-fixture.h"
#include "util.h"
#include "proc-fixture.h"

const int test_requires_kvm = 1;

#define MAX_DATA 4

struct hd {
	char dir[64], url[128];
	pid_t agent;
	struct mig_client ctl;        /* asked for the migration; carries its EVENTs */
	int lfd;
	char addr[128];
	struct mig_outgoing out;
	char id[37];
	unsigned n;
	struct xport_conn st[1 + MAX_DATA];   /* [0]: the control stream */
	pthread_t drain[MAX_DATA];
	bool draining;
};

/* A source agent hosting VM `vm`, our listener, and a connection to the
 * agent, ready to ask for the migration. */
static void hd_prepare(struct hd *h, const char *vm, unsigned streams)
{
	struct mig_error err = { 0 };
	struct xport_endpoint ep = { .kind = XPORT_EP_TCP, .host = "127.0.0.1" };
	struct run_result r;
	char args[512];
	uuid_t uu;

	memset(h, 0, sizeof(*h));
	for (unsigned i = 0; i <= MAX_DATA; i++)
		h->st[i].fd = -1;
	h->n = streams;
	snprintf(h->dir, sizeof(h->dir), "/tmp/migratectl-test-XXXXXX");
	cr_assert_not_null(mkdtemp(h->dir));
	snprintf(h->url, sizeof(h->url), "unix://%s/a.sock", h->dir);
	h->agent = proc_agent(h->url, NULL);
	proc_wait_agent(h->url, NULL);
	snprintf(args, sizeof(args), "vm create %s --name %s --lab mem=64M,vcpus=1,wss=4M", h->url,
		 vm);
	proc_run(args, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);

	h->lfd = xport_listen(&ep, &err);
	cr_assert_geq(h->lfd, 0, "%s", err.msg);
	cr_assert_eq(xport_local_addr(h->lfd, h->addr, sizeof(h->addr)), 0);
	cr_assert_eq(mig_client_open(h->url, NULL, &h->ctl, &err), 0, "%s", err.msg);
	uuid_generate_random(uu);
	uuid_unparse_lower(uu, h->id);
	memcpy(h->out.id, uu, 16);
	xport_random(h->out.secret, sizeof(h->out.secret));
	snprintf(h->out.name, sizeof(h->out.name), "%s", vm);
	snprintf(h->out.dest_addr, sizeof(h->out.dest_addr), "%s", h->addr);
	h->out.streams = streams;
	h->out.downtime_limit_ms = 300;
	h->out.codec = XPORT_CODEC_NONE;
	h->out.timeout_action = CONV_TIMEOUT_ABORT;
	h->out.checksum = MIG_CHECKSUM_FRAMES;
}

/* The source agent takes the migration of the VM to us on. */
static void hd_ask(struct hd *h, uint64_t switchover_ms)
{
	struct mig_error err = { 0 };

	h->out.switchover_timeout_ms = switchover_ms;
	cr_assert_eq(mig_client_call(&h->ctl, MIG_OP_MIG_OUTGOING, &h->out, sizeof(h->out), NULL,
				     &err), 0, "%s", err.msg);
}

static void hd_up(struct hd *h, const char *vm, unsigned streams, uint64_t switchover_ms)
{
	hd_prepare(h, vm, streams);
	hd_ask(h, switchover_ms);
}

/* Takes every stream the source opens and proves back the secret; with
 * `refuse`, answers each with that ERROR instead. */
static void hd_accept(struct hd *h, const char *refuse)
{
	for (unsigned k = 0; k <= h->n; k++) {
		struct mig_error err = { 0 };
		struct pollfd p = { .fd = h->lfd, .events = POLLIN };
		struct mig_stream_hello hello;
		struct mig_frame_hdr fh;
		struct mig_buf pl = { 0 };
		struct xport_conn c;
		int fd;

		cr_assert_eq(poll(&p, 1, 20000), 1, "the source opened only %u streams", k);
		fd = accept4(h->lfd, NULL, NULL, SOCK_CLOEXEC);
		cr_assert_geq(fd, 0);
		cr_assert_eq(xport_conn_init(&c, fd, &err), 0, "%s", err.msg);
		cr_assert_eq(xport_conn_recv(&c, &fh, &pl, 10000, &err), 0, "%s", err.msg);
		cr_assert_eq(fh.type, MIG_FRAME_STREAM_HELLO);
		cr_assert_eq(pl.len, sizeof(hello));
		memcpy(&hello, pl.data, sizeof(hello));
		mig_buf_free(&pl);
		cr_assert_leq(hello.index, h->n);
		if (refuse) {
			struct mig_error_msg m;

			mig_error_msg_fill(&m, -EACCES, refuse);
			xport_conn_send(&c, MIG_FRAME_ERROR, 0, &m, sizeof(m), NULL);
			xport_conn_close(&c);
			continue;
		}
		mig_stream_hello_seal(&hello, h->out.secret, true);
		cr_assert_eq(xport_conn_send(&c, MIG_FRAME_STREAM_HELLO, 0, &hello, sizeof(hello),
					     &err), 0, "%s", err.msg);
		h->st[hello.index] = c;
	}
}

/* Reads one frame on stream k within 30 s; it must be of type `type`. */
static void hd_recv(struct hd *h, unsigned k, uint16_t type, struct mig_buf *pl)
{
	struct mig_error err = { 0 };
	struct mig_frame_hdr fh;

	cr_assert_eq(xport_conn_recv(&h->st[k], &fh, pl, 30000, &err), 0, "%s", err.msg);
	cr_assert_eq(fh.type, type, "expected %s, got %s", mig_frame_type_to_string(type),
		     mig_frame_type_to_string(fh.type));
}

static void hd_send(struct hd *h, uint16_t type, const void *p, size_t n)
{
	struct mig_error err = { 0 };

	cr_assert_eq(xport_conn_send(&h->st[0], type, 0, p, n, &err), 0, "%s", err.msg);
}

/* A data stream's pages and device state go nowhere: frames are read and
 * checked, the page data after each PAGES frame read and dropped, until the
 * final ROUND_END. */
static void *drain_main(void *arg)
{
	struct xport_conn *c = arg;
	uint8_t *sink = malloc(256 * 4096);
	struct mig_buf pl = { 0 };

	for (;;) {
		struct mig_frame_hdr fh;
		struct mig_pages_hdr ph;
		struct mig_round_end re;

		if (xport_conn_recv(c, &fh, &pl, 60000, NULL) < 0)
			break;
		if (fh.type == MIG_FRAME_PAGES) {
			size_t got = 0;

			memcpy(&ph, pl.data, sizeof(ph));
			while (got < ph.data_len) {
				ssize_t n = read(c->fd, sink, ph.data_len - got);

				if (n <= 0)
					goto out;
				got += (size_t)n;
			}
		} else if (fh.type == MIG_FRAME_ROUND_END) {
			memcpy(&re, pl.data, sizeof(re));
			if (re.final)
				break;
		}
	}
out:
	mig_buf_free(&pl);
	free(sink);
	return NULL;
}

/* SETUP answered READY, the data streams drained (pages and device state,
 * up to the final ROUND_END): the source now waits for LOADED. */
static void hd_to_loaded(struct hd *h)
{
	struct mig_reply ready = { 0 };
	struct mig_buf pl = { 0 };

	hd_accept(h, NULL);
	hd_recv(h, 0, MIG_FRAME_SETUP, &pl);
	hd_send(h, MIG_FRAME_READY, &ready, sizeof(ready));
	for (unsigned k = 0; k < h->n; k++)
		cr_assert_eq(pthread_create(&h->drain[k], NULL, drain_main, &h->st[1 + k]), 0);
	h->draining = true;
	for (unsigned k = 0; k < h->n; k++)
		pthread_join(h->drain[k], NULL);
	h->draining = false;
	mig_buf_free(&pl);
}

/* On to COMMIT: LOADED with status 0 (no digest: the source does not
 * verify), then the source's COMMIT. */
static void hd_to_commit(struct hd *h)
{
	struct mig_loaded l = { 0 };
	struct mig_buf pl = { 0 };

	hd_to_loaded(h);
	hd_send(h, MIG_FRAME_LOADED, &l, sizeof(l));
	hd_recv(h, 0, MIG_FRAME_COMMIT, &pl);
	mig_buf_free(&pl);
}

static void hd_running(struct hd *h, uint32_t kind)
{
	struct mig_running run = { .kind = kind, .start_realtime_ns = mig_realtime_ns(),
				   .passes = kind };

	hd_send(h, MIG_FRAME_RUNNING, &run, sizeof(run));
}

enum misdeed { CLOSE, GARBAGE, ABORT, STALL };

static void hd_misbehave(struct hd *h, enum misdeed what)
{
	static const uint8_t junk[64] = { 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5 };
	struct mig_error_msg m;

	switch (what) {
	case CLOSE:
		for (unsigned k = 0; k <= h->n; k++)
			if (h->st[k].fd >= 0)
				xport_conn_close(&h->st[k]);
		break;
	case GARBAGE:
		cr_assert_eq(write(h->st[0].fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
		break;
	case ABORT:
		mig_error_msg_fill(&m, -EIO, "hostile destination: not starting (or so it says)");
		hd_send(h, MIG_FRAME_ABORT, &m, sizeof(m));
		break;
	case STALL:
		break;
	}
}

/* The migration's RESULT, read on the connection that asked for it. */
static void hd_result(struct hd *h, struct mig_event *res)
{
	struct mig_buf pl = { 0 };
	double end = fixture_now() + 90;

	for (;;) {
		struct mig_error err = { 0 };
		struct mig_frame_hdr fh;
		int r = xport_conn_recv(&h->ctl.conn, &fh, &pl, 1000, &err);

		cr_assert_lt(fixture_now(), end, "no RESULT from the source agent");
		if (r == -ETIME)
			continue;
		cr_assert_eq(r, 0, "%s", err.msg);
		cr_assert_eq(fh.type, MIG_FRAME_EVENT);
		cr_assert_geq(pl.len, sizeof(*res));
		memcpy(res, pl.data, sizeof(*res));
		if (res->kind == MIG_EVENT_RESULT) {
			/* the source VM's devices follow, one record each */
			cr_assert_eq(pl.len, sizeof(*res) + res->nr_devices *
				     sizeof(struct mig_event_device));
			cr_assert_gt(res->nr_devices, 0);
			break;
		}
		cr_assert_eq(pl.len, sizeof(*res));
	}
	res->error[sizeof(res->error) - 1] = '\0';
	mig_buf_free(&pl);
}

static void hd_down(struct hd *h)
{
	char sock[128];

	for (unsigned k = 0; k <= h->n; k++)
		if (h->st[k].fd >= 0)
			xport_conn_close(&h->st[k]);
	if (h->lfd >= 0)
		close(h->lfd);
	mig_client_close(&h->ctl);
	proc_stop(h->agent);
	snprintf(sock, sizeof(sock), "%s/a.sock", h->dir);
	unlink(sock);
	rmdir(h->dir);
}

/* `vm list` of the source as JSON, for VM `vm`: its state and passes. */
static double vm_passes(struct hd *h, const char *vm, char *state, size_t n)
{
	struct run_result r;
	char args[256];
	const char *p;

	snprintf(args, sizeof(args), "vm list %s --json", h->url);
	proc_run(args, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);
	snprintf(args, sizeof(args), "\"name\":\"%s\"", vm);
	p = strstr(r.out, args);
	cr_assert_not_null(p, "no VM %s on the source: %s", vm, r.out);
	cr_assert_not_null(json_field(p, "state", state, n));
	return json_num(p, "passes");
}

/* The source kept its copy paused and held for an operator: no guest pass
 * in half a second, and vm list names the migration. */
static void expect_held(struct hd *h, const char *vm)
{
	char st[32], args[256], buf[64];
	struct run_result r;
	double p0, p1;

	p0 = vm_passes(h, vm, st, sizeof(st));
	cr_assert_str_eq(st, "held");
	fixture_sleep_ms(500);
	p1 = vm_passes(h, vm, st, sizeof(st));
	cr_assert_eq(p0, p1, "the held VM runs on the source: passes %.0f -> %.0f", p0, p1);
	snprintf(args, sizeof(args), "vm list %s --json", h->url);
	proc_run(args, &r);
	cr_assert_str_eq(json_field(r.out, "held_by", buf, sizeof(buf)), h->id, "%s", r.out);
}

/* The VM runs on the source: its passes climb. */
static void expect_runs(struct hd *h, const char *vm)
{
	char st[32];
	double p0 = vm_passes(h, vm, st, sizeof(st)), p1 = p0;

	cr_assert_str_eq(st, "running");
	for (int i = 0; i < 100 && p1 <= p0; i++) {
		fixture_sleep_ms(100);
		p1 = vm_passes(h, vm, st, sizeof(st));
	}
	cr_assert_gt(p1, p0, "the VM does not run on the source");
}

static void expect_unknown(const struct mig_event *res)
{
	cr_assert_eq(res->result, MIG_RESULT_FAILED);
	cr_assert_eq(res->owner, MIG_OWNER_NONE, "owner %u: %s", res->owner, res->error);
	cr_assert_eq(res->src_held, 1);
	cr_assert_not_null(strstr(res->error, "after commit, ownership unknown (source VM kept "
					      "paused)"), "%s", res->error);
}

struct case_ {
	bool after_kind1;         /* misbehave after RUNNING kind 1, else right after COMMIT */
	enum misdeed what;
};

ParameterizedTestParameters(hostile_dst, after_commit)
{
	static struct case_ c[] = {
		{ false, CLOSE }, { false, GARBAGE }, { false, ABORT }, { false, STALL },
		{ true, CLOSE },  { true, GARBAGE },  { true, ABORT },  { true, STALL },
	};

	return cr_make_param_array(struct case_, c, sizeof(c) / sizeof(c[0]));
}

/* After COMMIT, nothing but RUNNING kind 2 (the guest runs there) moves the
 * VM, and nothing but RUNNING kind 1 with an error status gives it back:
 * a close, garbage, an ABORT or silence leaves it paused and held. */
ParameterizedTest(struct case_ *c, hostile_dst, after_commit, .timeout = 120)
{
	struct mig_event res;
	struct hd h;

	hd_up(&h, "victim", 2, 0);
	hd_to_commit(&h);
	if (c->after_kind1)
		hd_running(&h, 1);
	hd_misbehave(&h, c->what);
	hd_result(&h, &res);
	expect_unknown(&res);
	if (c->what == ABORT)
		cr_assert_not_null(strstr(res.error, "the destination aborted"), "%s", res.error);
	if (c->after_kind1)
		cr_assert_gt(res.downtime_ms + 1, 0);
	expect_held(&h, "victim");
	hd_down(&h);
}

/* RUNNING kind 2 is the message that moves ownership: once it arrived, the
 * destination owns the VM even if it vanishes the next moment, and the
 * source has dropped its copy. */
Test(hostile_dst, confirmed_then_gone, .timeout = 120)
{
	struct mig_event res;
	struct run_result r;
	char args[256];
	struct hd h;

	hd_up(&h, "moved", 1, 0);
	hd_to_commit(&h);
	hd_running(&h, 1);
	hd_running(&h, 2);
	hd_misbehave(&h, CLOSE);
	hd_result(&h, &res);
	cr_assert_eq(res.result, MIG_RESULT_COMPLETED, "%s", res.error);
	cr_assert_eq(res.owner, MIG_OWNER_DESTINATION);
	cr_assert_eq(res.src_held, 0);
	snprintf(args, sizeof(args), "vm list %s --json", h.url);
	proc_run(args, &r);
	cr_assert_null(strstr(r.out, "moved"), "the source kept its copy: %s", r.out);
	hd_down(&h);
}

/* RUNNING kind 1 with an error status is the destination saying it did not
 * start the VM: the one answer after COMMIT that gives it back. */
Test(hostile_dst, not_started_gives_it_back, .timeout = 120)
{
	struct mig_running run = { .kind = 1, .status = -ENOMEM, .msg = "no memory" };
	struct mig_event res;
	struct hd h;

	hd_up(&h, "back", 1, 0);
	hd_to_commit(&h);
	hd_send(&h, MIG_FRAME_RUNNING, &run, sizeof(run));
	hd_result(&h, &res);
	cr_assert_eq(res.owner, MIG_OWNER_SOURCE, "%s", res.error);
	cr_assert_not_null(strstr(res.error, "did not start the VM: no memory"), "%s", res.error);
	expect_runs(&h, "back");
	hd_down(&h);
}

/* A destination that takes the last pages and the state and then says
 * nothing: the source gives up at its switchover deadline (2 s here), not
 * at a 120 s protocol timeout, and the guest runs again. */
Test(hostile_dst, silent_before_loaded_meets_the_deadline, .timeout = 120)
{
	struct mig_event res;
	struct hd h;
	double t;

	hd_up(&h, "frozen", 2, 2000);
	hd_to_loaded(&h);
	t = fixture_now();
	hd_result(&h, &res);
	t = fixture_now() - t;
	cr_assert_eq(res.result, MIG_RESULT_FAILED);
	cr_assert_eq(res.owner, MIG_OWNER_SOURCE, "%s", res.error);
	cr_assert_eq(res.switchover_timeout_ms, 2000);
	cr_assert_not_null(strstr(res.error, "switchover deadline of 2000 ms"), "%s", res.error);
	cr_assert_lt(t, 8.0, "the source waited %.1f s past a 2 s deadline", t);
	expect_runs(&h, "frozen");
	{
		/* and the destination was told to drop its copy */
		struct mig_buf pl = { 0 };

		hd_recv(&h, 0, MIG_FRAME_ABORT, &pl);
		mig_buf_free(&pl);
	}
	hd_down(&h);
}

/* Before COMMIT an ABORT is believed: the destination gave up, the source
 * runs on. */
Test(hostile_dst, abort_before_commit_rolls_back, .timeout = 120)
{
	struct mig_event res;
	struct hd h;

	hd_up(&h, "rolled", 1, 0);
	hd_to_loaded(&h);
	hd_misbehave(&h, ABORT);
	hd_result(&h, &res);
	cr_assert_eq(res.owner, MIG_OWNER_SOURCE, "%s", res.error);
	cr_assert_eq(res.src_held, 0);
	cr_assert_not_null(strstr(res.error, "the destination aborted"), "%s", res.error);
	expect_runs(&h, "rolled");
	hd_down(&h);
}

/* Every stream refused: the source says so itself, with the count and the
 * destination's reason, not only the destination's log. */
Test(hostile_dst, streams_refused_are_reported_at_the_source, .timeout = 120)
{
	struct mig_event res;
	struct hd h;

	hd_up(&h, "lonely", 2, 0);
	hd_accept(&h, "go away");
	hd_result(&h, &res);
	cr_assert_eq(res.owner, MIG_OWNER_SOURCE, "%s", res.error);
	cr_assert_not_null(strstr(res.error, "3 of 3 migration streams refused by the "
					     "destination: stream "), "%s", res.error);
	cr_assert_not_null(strstr(res.error, "go away"), "%s", res.error);
	expect_runs(&h, "lonely");
	hd_down(&h);
}

/* Nothing listens where the destination was: the source says so, names the
 * stream, and runs on. */
Test(hostile_dst, destination_gone_before_the_streams, .timeout = 60)
{
	struct mig_event res;
	struct hd h;

	hd_prepare(&h, "alone", 2);
	close(h.lfd);
	h.lfd = -1;
	hd_ask(&h, 0);
	hd_result(&h, &res);
	cr_assert_eq(res.owner, MIG_OWNER_SOURCE, "%s", res.error);
	cr_assert_not_null(strstr(res.error, "migration stream 0: nothing listens on"), "%s",
			   res.error);
	expect_runs(&h, "alone");
	hd_down(&h);
}

/* A held VM after "ownership unknown": an ordinary retry is refused with
 * the reason and the remedy and leaves it paused; destroy is refused; only
 * vm resume or vm discard naming that migration changes it, and after a
 * resume it migrates again. */
Test(hostile_dst, held_vm_changes_only_by_operator, .timeout = 180)
{
	struct mig_event res;
	struct run_result r;
	char args[512], buf[256];
	struct hd h;

	hd_up(&h, "held1", 1, 0);
	hd_to_commit(&h);
	hd_misbehave(&h, ABORT);
	hd_result(&h, &res);
	expect_unknown(&res);

	/* a routine retry to another destination */
	snprintf(args, sizeof(args), "start %s local --vm held1 --json", h.url);
	proc_run(args, &r);
	cr_assert_eq(r.status, 3, "exit %d: %s %s", r.status, r.out, r.err);
	json_expect_str(r.out, "owner", "none");
	cr_assert_not_null(strstr(r.out, "is held paused"), "%s", r.out);
	cr_assert_not_null(strstr(r.out, "\"source_copy\":{"), "%s", r.out);
	cr_assert_str_eq(json_field(strstr(r.out, "\"source_copy\""), "migration", buf,
				    sizeof(buf)), h.id);
	snprintf(buf, sizeof(buf), "migratectl vm resume %s held1 --migration %s", h.url, h.id);
	cr_assert_not_null(strstr(r.err, buf), "no remedy on stderr: %s", r.err);
	expect_held(&h, "held1");

	snprintf(args, sizeof(args), "vm destroy %s held1", h.url);
	proc_run(args, &r);
	cr_assert_eq(r.status, 1, "%s", r.err);
	cr_assert_not_null(strstr(r.err, "held paused"), "%s", r.err);

	snprintf(args, sizeof(args), "vm resume %s held1", h.url);
	proc_expect_usage(args, "--migration ID");
	snprintf(args, sizeof(args), "vm resume %s held1 --migration "
		 "00000000-0000-4000-8000-000000000000", h.url);
	proc_run(args, &r);
	cr_assert_eq(r.status, 1, "%s", r.err);
	cr_assert_not_null(strstr(r.err, "is held by migration"), "%s", r.err);
	expect_held(&h, "held1");

	/* the agent lists it, so a lost id can be found */
	snprintf(args, sizeof(args), "migrations %s --json", h.url);
	proc_run(args, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_not_null(strstr(r.out, h.id), "%s", r.out);
	json_expect_str(r.out, "state", "held");

	snprintf(args, sizeof(args), "vm resume %s held1 --migration %s", h.url, h.id);
	proc_run(args, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);
	expect_runs(&h, "held1");
	snprintf(args, sizeof(args), "vm resume %s held1 --migration %s", h.url, h.id);
	proc_run(args, &r);
	cr_assert_eq(r.status, 1, "resumed twice: %s", r.err);
	cr_assert_not_null(strstr(r.err, "is not held"), "%s", r.err);

	/* its devices walked back properly: it migrates again, verified */
	snprintf(args, sizeof(args), "start %s local --vm held1 --json", h.url);
	proc_run(args, &r);
	cr_assert_eq(r.status, 0, "exit %d: %s %s", r.status, r.out, r.err);
	json_expect_str(r.out, "result", "completed");
	json_expect_str(r.out, "match", "true");
	hd_down(&h);
}

Test(hostile_dst, held_vm_discarded_by_operator, .timeout = 120)
{
	struct mig_event res;
	struct run_result r;
	char args[512];
	struct hd h;

	hd_up(&h, "held2", 1, 0);
	hd_to_commit(&h);
	hd_running(&h, 1);
	hd_misbehave(&h, CLOSE);
	hd_result(&h, &res);
	expect_unknown(&res);
	expect_held(&h, "held2");
	snprintf(args, sizeof(args), "vm discard %s held2 --migration %s", h.url, h.id);
	proc_run(args, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);
	snprintf(args, sizeof(args), "vm list %s --json", h.url);
	proc_run(args, &r);
	cr_assert_null(strstr(r.out, "held2"), "%s", r.out);
	snprintf(args, sizeof(args), "migrations %s --json", h.url);
	proc_run(args, &r);
	cr_assert_str_eq(r.out, "[]\n", "%s", r.out);
	hd_down(&h);
}
