// SPDX-License-Identifier: MIT
/*
 * The destination under hostile input: a real agent prepares an incoming
 * migration, and this test plays the source.  A stream without the right HMAC
 * is refused; a frame with one field corrupted (magic, version, type, length,
 * checksum) aborts the migration with an error naming that field, and the
 * destination keeps no VM.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <migrate/agent.h>

#include "migrate/migrate-internal.h"
#include "proc-fixture.h"

const int test_requires_kvm = 1;

struct rig {
	char dir[64];
	char url[128];
	pid_t agent;
	struct mig_client client;
	struct mig_incoming in;
	char addr[128];
};

/* The VM both sides agree on. */
static void rig_config(struct lab_config *cfg)
{
	lab_config_default(cfg);
	cfg->mem_bytes = 64ULL << 20;
	cfg->wss_bytes = 4ULL << 20;
	cfg->vcpus = 1;
}

static void rig_up(struct rig *g, const char *name)
{
	struct mig_error err = { 0 };
	struct mig_buf extra = { 0 };
	struct mig_incoming_reply rep;

	snprintf(g->dir, sizeof(g->dir), "/tmp/migratectl-test-XXXXXX");
	cr_assert_not_null(mkdtemp(g->dir));
	snprintf(g->url, sizeof(g->url), "unix://%s/a.sock", g->dir);
	g->agent = proc_agent(g->url, NULL);
	proc_wait_agent(g->url, NULL);
	cr_assert_eq(mig_client_open(g->url, NULL, &g->client, &err), 0, "%s", err.msg);
	memset(&g->in, 0, sizeof(g->in));
	for (int i = 0; i < 16; i++)
		g->in.id[i] = (uint8_t)(i * 7 + 1);
	xport_random(g->in.secret, sizeof(g->in.secret));
	snprintf(g->in.name, sizeof(g->in.name), "%s", name);
	g->in.streams = 1;
	{
		struct lab_config cfg;

		rig_config(&cfg);
		lab_to_wire(&cfg, &g->in.lab);
	}
	snprintf(g->in.listen_host, sizeof(g->in.listen_host), "127.0.0.1");
	cr_assert_eq(mig_client_call(&g->client, MIG_OP_MIG_INCOMING, &g->in, sizeof(g->in), &extra,
				     &err), 0, "%s", err.msg);
	cr_assert_eq(extra.len, sizeof(rep));
	memcpy(&rep, extra.data, sizeof(rep));
	snprintf(g->addr, sizeof(g->addr), "%s", rep.addr);
	mig_buf_free(&extra);
}

/* The destination keeps no VM of that name, and still answers. */
static void rig_expect_untouched(struct rig *g)
{
	struct mig_error err = { 0 };
	struct mig_buf extra = { 0 };

	for (int i = 0; i < 50; i++) {
		struct run_result r;
		char args[256];

		snprintf(args, sizeof(args), "vm list %s --json", g->url);
		proc_run(args, &r);
		cr_assert_eq(r.status, 0, "the agent no longer answers: %s", r.err);
		if (!strstr(r.out, g->in.name))
			break;
		usleep(100000);   /* the reservation is dropped when the receiver ends */
	}
	cr_assert_eq(mig_client_call(&g->client, MIG_OP_VM_LIST, NULL, 0, &extra, &err), 0, "%s",
		     err.msg);
	cr_assert_eq(extra.len, 0, "the destination holds a VM after a refused migration");
	mig_buf_free(&extra);
}

static void rig_down(struct rig *g)
{
	char sock[128];

	mig_client_close(&g->client);
	proc_stop(g->agent);
	snprintf(sock, sizeof(sock), "%s/a.sock", g->dir);
	unlink(sock);
	rmdir(g->dir);
}

/* Connects one stream and sends its STREAM_HELLO; returns the reply frame type. */
static uint16_t open_stream(struct rig *g, struct xport_conn *c, unsigned index, bool good,
			    char *msg, size_t n)
{
	struct mig_error err = { 0 };
	struct xport_endpoint ep;
	struct mig_stream_hello h = { 0 };
	struct mig_frame_hdr fh;
	struct mig_buf pl = { 0 };
	char url[160];
	int fd;

	snprintf(url, sizeof(url), "tcp://%s", g->addr);
	cr_assert_eq(xport_endpoint_parse(url, &ep, &err), 0, "%s", err.msg);
	fd = xport_connect(&ep, 5000, &err);
	cr_assert_geq(fd, 0, "%s", err.msg);
	cr_assert_eq(xport_conn_init(c, fd, &err), 0, "%s", err.msg);
	memcpy(h.id, g->in.id, 16);
	h.index = index;
	h.nstreams = 1;
	xport_random(h.nonce, sizeof(h.nonce));
	if (good) {
		stream_mac(g->in.secret, "migratectl-stream", &h, h.mac);
	} else {
		uint8_t wrong[MIG_SECRET_LEN];

		memcpy(wrong, g->in.secret, sizeof(wrong));
		wrong[0] ^= 1;   /* one bit off */
		stream_mac(wrong, "migratectl-stream", &h, h.mac);
	}
	cr_assert_eq(xport_conn_send(c, MIG_FRAME_STREAM_HELLO, 0, &h, sizeof(h), &err), 0, "%s",
		     err.msg);
	cr_assert_eq(xport_conn_recv(c, &fh, &pl, 10000, &err), 0, "%s", err.msg);
	if (fh.type == MIG_FRAME_ERROR && msg) {
		struct mig_error_msg m;

		cr_assert_eq(pl.len, sizeof(m));
		memcpy(&m, pl.data, sizeof(m));
		snprintf(msg, n, "%.*s", (int)sizeof(m.msg) - 1, m.msg);
	}
	mig_buf_free(&pl);
	return fh.type;
}

Test(wire_live, stream_with_bad_hmac_refused, .timeout = 60)
{
	struct rig g;
	struct xport_conn c;
	char msg[512] = "";

	rig_up(&g, "victim");
	cr_assert_eq(open_stream(&g, &c, 0, false, msg, sizeof(msg)), MIG_FRAME_ERROR);
	cr_assert_not_null(strstr(msg, "does not prove"), "%s", msg);
	{
		/* the connection is closed after the refusal */
		struct mig_frame_hdr fh;
		struct mig_buf pl = { 0 };
		struct mig_error err = { 0 };

		cr_assert_lt(xport_conn_recv(&c, &fh, &pl, 5000, &err), 0);
		mig_buf_free(&pl);
	}
	xport_conn_close(&c);
	/* a good stream is still accepted afterwards: one impostor does not end it */
	cr_assert_eq(open_stream(&g, &c, 0, true, NULL, 0), MIG_FRAME_STREAM_HELLO);
	xport_conn_close(&c);
	rig_down(&g);
}

enum corrupt { C_MAGIC, C_VERSION, C_TYPE_ZERO, C_TYPE_UNKNOWN, C_LENGTH, C_CHECKSUM, C_PAYLOAD,
	       C_SEQ, C_PFN };

static void corrupted_frame(enum corrupt what, const char *needle)
{
	struct rig g;
	struct xport_conn ctl, data;
	struct mig_error err = { 0 };
	struct mig_setup st = { 0 };
	struct lab_config cfg;
	struct mig_frame_hdr fh, h;
	struct mig_buf pl = { 0 };
	struct mig_reply rep;
	uint8_t payload[sizeof(struct mig_pages_hdr) + 8 + 4096];
	struct mig_pages_hdr *ph = (struct mig_pages_hdr *)payload;
	struct iovec iov = { payload, sizeof(payload) };
	char text[600];

	rig_up(&g, "target");
	cr_assert_eq(open_stream(&g, &ctl, 0, true, NULL, 0), MIG_FRAME_STREAM_HELLO);
	cr_assert_eq(open_stream(&g, &data, 1, true, NULL, 0), MIG_FRAME_STREAM_HELLO);
	rig_config(&cfg);
	lab_to_wire(&cfg, &st.lab);
	st.nr_pages = cfg.mem_bytes / 4096;
	st.page_size = 4096;
	snprintf(st.name, sizeof(st.name), "target");
	cr_assert_eq(xport_conn_send(&ctl, MIG_FRAME_SETUP, 0, &st, sizeof(st), &err), 0, "%s", err.msg);
	cr_assert_eq(xport_conn_recv(&ctl, &fh, &pl, 60000, &err), 0, "%s", err.msg);
	cr_assert_eq(fh.type, MIG_FRAME_READY);
	memcpy(&rep, pl.data, sizeof(rep));
	cr_assert_eq(rep.status, 0, "%s", rep.msg);

	/* One PAGES frame: page 600 filled with 0xab, then one field broken. */
	*ph = (struct mig_pages_hdr){ .count = 1, .zero_count = 0, .round = 0, .data_len = 4096 };
	*(uint64_t *)(ph + 1) = what == C_PFN ? (1ULL << 40) : 600;
	memset(payload + sizeof(*ph) + 8, 0xab, 4096);
	mig_frame_seal(&h, MIG_FRAME_PAGES, 0, what == C_SEQ ? data.tx_seq + 5 : data.tx_seq + 1,
		       &iov, 1);
	switch (what) {
	case C_MAGIC: h.magic ^= 0x01000000; break;
	case C_VERSION: h.version = htole16(MIG_WIRE_VERSION + 1); break;
	case C_TYPE_ZERO: h.type = 0; break;
	case C_TYPE_UNKNOWN: h.type = htole16(999); break;
	case C_LENGTH: h.length = htole32(MIG_FRAME_MAX + 1); break;
	case C_CHECKSUM: h.checksum ^= 1; break;
	case C_PAYLOAD: payload[sizeof(*ph) + 8 + 100] ^= 0x10; break;
	case C_SEQ: case C_PFN: break;
	}
	cr_assert_eq(write(data.fd, &h, sizeof(h)), (ssize_t)sizeof(h));
	cr_assert_eq(write(data.fd, payload, sizeof(payload)), (ssize_t)sizeof(payload));

	/* The destination aborts, says why, and drops the VM it prepared. */
	cr_assert_eq(xport_conn_recv(&ctl, &fh, &pl, 30000, &err), 0, "%s", err.msg);
	cr_assert_eq(fh.type, MIG_FRAME_ABORT, "got %s", mig_frame_type_to_string(fh.type));
	{
		struct mig_error_msg m;

		memcpy(&m, pl.data, sizeof(m));
		snprintf(text, sizeof(text), "%.*s", (int)sizeof(m.msg) - 1, m.msg);
		cr_assert_lt(m.code, 0);
	}
	cr_assert_not_null(strstr(text, needle), "abort reason lacks '%s': %s", needle, text);
	mig_buf_free(&pl);
	xport_conn_close(&ctl);
	xport_conn_close(&data);
	rig_expect_untouched(&g);
	rig_down(&g);
}

Test(wire_live, corrupt_magic, .timeout = 60) { corrupted_frame(C_MAGIC, "magic"); }
Test(wire_live, corrupt_version, .timeout = 60) { corrupted_frame(C_VERSION, "version"); }
Test(wire_live, corrupt_type_zero, .timeout = 60) { corrupted_frame(C_TYPE_ZERO, "invalid frame type"); }
Test(wire_live, corrupt_type_unknown, .timeout = 60) { corrupted_frame(C_TYPE_UNKNOWN, "unknown frame type"); }
Test(wire_live, corrupt_length, .timeout = 60) { corrupted_frame(C_LENGTH, "exceeds the limit"); }
Test(wire_live, corrupt_checksum, .timeout = 60) { corrupted_frame(C_CHECKSUM, "checksum mismatch"); }
Test(wire_live, corrupt_payload, .timeout = 60) { corrupted_frame(C_PAYLOAD, "checksum mismatch"); }
Test(wire_live, frame_out_of_order, .timeout = 60) { corrupted_frame(C_SEQ, "out of order"); }
Test(wire_live, page_outside_guest, .timeout = 60) { corrupted_frame(C_PFN, "outside the guest"); }
