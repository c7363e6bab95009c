// SPDX-License-Identifier: MIT
/*
 * The destination under hostile input: a real agent prepares an incoming
 * migration, and this test plays the source.  A stream without the right HMAC
 * is refused; a frame with one field corrupted (magic, version, type, length,
 * checksum, page list, page data, seq, page number, round) aborts the
 * migration with an error naming that field, and the destination keeps no
 * VM.  Torn LIVE pages must arrive again before the last round ends.  So
 * must a SETUP whose device manifest does not match the VM, and device
 * state framed wrongly or not a device's state at all.
 */
#include <stddef.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <migrate/agent.h>
#include <migrate/engine.h>
#include <migrate/lab.h>
#include <migrate/wire-order.h>

#include "lab-fixture.h"
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

static void rig_up(struct rig *g, const char *name, unsigned streams)
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
	g->in.streams = streams;
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
	h.nstreams = g->in.streams;
	xport_random(h.nonce, sizeof(h.nonce));
	if (good) {
		mig_stream_hello_seal(&h, g->in.secret, false);
	} else {
		uint8_t wrong[MIG_SECRET_LEN];

		memcpy(wrong, g->in.secret, sizeof(wrong));
		wrong[0] ^= 1;   /* one bit off */
		mig_stream_hello_seal(&h, wrong, false);
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

	rig_up(&g, "victim", 1);
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

/* SETUP as a source of the rig's VM sends it: the header, then the
 * manifest of a lab VM of that shape built here. */
static void setup_payload(struct rig *g, struct mig_buf *pl)
{
	struct mig_error err = { 0 };
	struct mig_setup st = { 0 };
	struct lab_config cfg;
	struct mig_lab_wire lw;
	struct mig_buf man = { 0 };
	struct lab_vm *vm;

	rig_config(&cfg);
	lab_to_wire(&cfg, &lw);
	memcpy(st.vm_desc, &lw, sizeof(lw));
	st.nr_pages = cfg.mem_bytes / 4096;
	st.page_size = 4096;
	snprintf(st.name, sizeof(st.name), "%s", g->in.name);
	cr_assert_eq(lab_vm_create(&cfg, &vm, &err), 0, "%s", err.msg);
	cr_assert_eq(mig_vm_manifest(lab_vm_mig(vm), &man, &err), 0, "%s", err.msg);
	lab_vm_destroy(vm);
	st.nr_devices = (uint32_t)(man.len / sizeof(struct mig_manifest_entry));
	cr_assert_geq(st.nr_devices, 3, "memory, a vCPU and the platform");
	pl->len = 0;
	cr_assert_eq(mig_buf_append(pl, &st, sizeof(st)), 0);
	cr_assert_eq(mig_buf_append(pl, man.data, man.len), 0);
	mig_buf_free(&man);
}

/* Opens the control stream and the data streams (data[0..streams)). */
static void rig_streams(struct rig *g, struct xport_conn *ctl, struct xport_conn *data)
{
	cr_assert_eq(open_stream(g, ctl, 0, true, NULL, 0), MIG_FRAME_STREAM_HELLO);
	for (unsigned i = 0; i < g->in.streams; i++)
		cr_assert_eq(open_stream(g, &data[i], i + 1, true, NULL, 0), MIG_FRAME_STREAM_HELLO);
}

/* Sends SETUP and returns READY's status, its text in msg. */
static int send_setup(struct xport_conn *ctl, const struct mig_buf *pl, char *msg, size_t n)
{
	struct mig_error err = { 0 };
	struct mig_frame_hdr fh;
	struct mig_buf rp = { 0 };
	struct mig_reply rep;

	cr_assert_eq(xport_conn_send(ctl, MIG_FRAME_SETUP, 0, pl->data, pl->len, &err), 0, "%s",
		     err.msg);
	cr_assert_eq(xport_conn_recv(ctl, &fh, &rp, 60000, &err), 0, "%s", err.msg);
	cr_assert_eq(fh.type, MIG_FRAME_READY, "got %s", mig_frame_type_to_string(fh.type));
	cr_assert_eq(rp.len, sizeof(rep));
	memcpy(&rep, rp.data, sizeof(rep));
	snprintf(msg, n, "%.*s", (int)sizeof(rep.msg) - 1, rep.msg);
	mig_buf_free(&rp);
	return rep.status;
}

/* Plays the source up to READY. */
static void rig_setup(struct rig *g, struct xport_conn *ctl, struct xport_conn *data)
{
	struct mig_buf pl = { 0 };
	char msg[256];

	rig_streams(g, ctl, data);
	setup_payload(g, &pl);
	cr_assert_eq(send_setup(ctl, &pl, msg, sizeof(msg)), 0, "%s", msg);
	mig_buf_free(&pl);
}

/* One PAGES frame as the wire carries it: header, meta (one page), then the
 * 4096 data bytes.  `tweak` may break one thing after sealing. */
struct pages_frame {
	struct mig_frame_hdr h;
	struct mig_pages_hdr ph;
	struct mig_page_ent ent;
	uint8_t data[4096];
};
_Static_assert(sizeof(struct pages_frame) == 32 + 16 + 16 + 4096, "no padding");

static void pages_frame(struct pages_frame *f, uint64_t seq, uint64_t pfn, uint32_t round,
			uint32_t flags, uint8_t fill)
{
	struct iovec meta = { &f->ph, sizeof(f->ph) + sizeof(f->ent) };

	memset(f->data, fill, sizeof(f->data));
	f->ph = (struct mig_pages_hdr){ .count = 1, .round = round, .data_len = 4096 };
	f->ent = (struct mig_page_ent){ pfn, mig_page_sum(f->data, seq, 0) };
	mig_frame_seal(&f->h, MIG_FRAME_PAGES, flags, seq, &meta, 1);
}

/* Up to READY, with one PAGES frame built (page 600 filled with 0xab, round
 * 0) for the caller to send, break or cut short. */
static void rig_up_with_page(struct rig *g, const char *name, struct xport_conn *ctl,
			     struct xport_conn *data, struct pages_frame *f)
{
	rig_up(g, name, 1);
	rig_setup(g, ctl, data);
	pages_frame(f, data->tx_seq + 1, 600, 0, 0, 0xab);
}

static void write_all(int fd, const void *p, size_t n)
{
	cr_assert_eq(write(fd, p, n), (ssize_t)n);
}

static void send_pages(struct xport_conn *c, const struct pages_frame *f)
{
	write_all(c->fd, f, sizeof(*f));
	c->tx_seq++;
}

static void send_round_end(struct xport_conn *c, uint32_t round, bool final, uint64_t frames)
{
	struct mig_round_end re = { round, final, frames };
	struct mig_error err = { 0 };

	cr_assert_eq(xport_conn_send(c, MIG_FRAME_ROUND_END, 0, &re, sizeof(re), &err), 0, "%s",
		     err.msg);
}

/* A frame received that must be ABORT: its text (pl is freed). */
static void abort_text(const struct mig_frame_hdr *fh, struct mig_buf *pl, char *text, size_t n)
{
	struct mig_error_msg m;

	cr_assert_eq(fh->type, MIG_FRAME_ABORT, "got %s", mig_frame_type_to_string(fh->type));
	cr_assert_eq(pl->len, sizeof(m));
	memcpy(&m, pl->data, sizeof(m));
	snprintf(text, n, "%.*s", (int)sizeof(m.msg) - 1, m.msg);
	cr_assert_lt(m.code, 0);
	mig_buf_free(pl);
}

/* Waits for the destination's ABORT and returns its text. */
static void expect_abort(struct xport_conn *ctl, char *text, size_t n)
{
	struct mig_error err = { 0 };
	struct mig_frame_hdr fh;
	struct mig_buf pl = { 0 };

	cr_assert_eq(xport_conn_recv(ctl, &fh, &pl, 30000, &err), 0, "%s", err.msg);
	abort_text(&fh, &pl, text, n);
}

/* Once the last round ended with no device state sent, the destination
 * answers LOADED with status < 0 (a vCPU's state never came), then ABORT.
 * Returns that LOADED: how far it got. */
static void expect_load_refused(struct xport_conn *ctl, struct mig_loaded *l)
{
	struct mig_error err = { 0 };
	struct mig_frame_hdr fh;
	struct mig_buf pl = { 0 };
	char text[600];

	cr_assert_eq(xport_conn_recv(ctl, &fh, &pl, 30000, &err), 0, "%s", err.msg);
	if (fh.type == MIG_FRAME_ABORT) {
		struct mig_error_msg m;

		memcpy(&m, pl.data, pl.len < sizeof(m) ? pl.len : sizeof(m));
		mig_buf_free(&pl);
		cr_assert_fail("aborted before loading: %.*s", (int)sizeof(m.msg) - 1, m.msg);
	}
	cr_assert_eq(fh.type, MIG_FRAME_LOADED, "got %s", mig_frame_type_to_string(fh.type));
	cr_assert_eq(pl.len, sizeof(*l));
	memcpy(l, pl.data, sizeof(*l));
	cr_assert_lt(l->status, 0, "a VM without device state loaded");
	mig_buf_free(&pl);
	expect_abort(ctl, text, sizeof(text));
}

/* One DEVICE_DATA frame: the header as given, then n bytes. */
static void send_dd_raw(struct xport_conn *c, const struct mig_device_data *dd, uint32_t flags,
			const void *p, size_t n)
{
	struct mig_error err = { 0 };
	struct mig_buf b = { 0 };

	cr_assert_eq(mig_buf_append(&b, dd, sizeof(*dd)), 0);
	cr_assert_eq(mig_buf_append(&b, p, n), 0);
	cr_assert_eq(xport_conn_send(c, MIG_FRAME_DEVICE_DATA, flags, b.data, b.len, &err), 0,
		     "%s", err.msg);
	mig_buf_free(&b);
}

/* One DEVICE_DATA frame: its header, then `len` bytes of state. */
static void send_device_data(struct xport_conn *c, uint32_t cls, uint32_t instance,
			     uint64_t offset, uint32_t round, uint32_t flags, const void *p,
			     uint32_t len)
{
	struct mig_device_data dd = { cls, instance, offset, round, len };

	send_dd_raw(c, &dd, flags, p, len);
}

/* Closes the streams, checks the destination kept nothing, stops the agent. */
static void rig_finish(struct rig *g, struct xport_conn *ctl, struct xport_conn *data)
{
	xport_conn_close(ctl);
	for (unsigned i = 0; i < g->in.streams; i++)
		xport_conn_close(&data[i]);
	rig_expect_untouched(g);
	rig_down(g);
}

/*
 * SETUP's device manifest, broken one way at a time: the destination
 * refuses before taking a page, says which device and why, and keeps
 * nothing.
 */
enum bad_manifest { M_COUNT, M_VERSION, M_FLAGS, M_FOREIGN, M_MISSING, M_TWICE, M_DESC };

static void bad_manifest(enum bad_manifest what, const char *needle)
{
	struct rig g;
	struct xport_conn ctl, data;
	struct mig_buf pl = { 0 };
	struct mig_setup *st;
	struct mig_manifest_entry *e;
	char msg[600] = "";
	unsigned vcpu = ~0U;

	rig_up(&g, "manifest", 1);
	rig_streams(&g, &ctl, &data);
	setup_payload(&g, &pl);
	st = (struct mig_setup *)pl.data;
	e = (struct mig_manifest_entry *)(pl.data + sizeof(*st));
	for (unsigned i = 0; i < st->nr_devices; i++)
		if (e[i].cls == MIG_DEV_VCPU && e[i].instance == 0)
			vcpu = i;
	cr_assert_neq(vcpu, ~0U, "the lab VM's manifest has vcpu 0");
	switch (what) {
	case M_COUNT:
		st->nr_devices++;
		break;
	case M_VERSION:
		e[vcpu].version++;
		break;
	case M_FLAGS:
		e[vcpu].flags ^= MIG_MANIFEST_F_STATE;
		break;
	case M_FOREIGN:
		e[vcpu].cls = 0x4242;
		break;
	case M_MISSING:
		e[vcpu] = e[st->nr_devices - 1];
		st->nr_devices--;
		pl.len -= sizeof(*e);
		break;
	case M_TWICE:
		e[vcpu ? 0 : 1] = e[vcpu];
		break;
	case M_DESC:
		e[vcpu].desc_len = sizeof(e->desc) + 1;
		break;
	}
	if (what == M_COUNT) {
		struct mig_error err = { 0 };

		cr_assert_eq(xport_conn_send(&ctl, MIG_FRAME_SETUP, 0, pl.data, pl.len, &err), 0,
			     "%s", err.msg);
		expect_abort(&ctl, msg, sizeof(msg));
	} else {
		cr_assert_lt(send_setup(&ctl, &pl, msg, sizeof(msg)), 0, "a bad manifest accepted");
	}
	cr_assert_not_null(strstr(msg, needle), "'%s' does not say '%s'", msg, needle);
	mig_buf_free(&pl);
	rig_finish(&g, &ctl, &data);
}

Test(wire_live, manifest_count_disagrees_with_length, .timeout = 60)
{
	bad_manifest(M_COUNT, "bad SETUP frame");
}
Test(wire_live, manifest_class_version_unknown, .timeout = 60)
{
	bad_manifest(M_VERSION, "device vcpu 0: the source's state is version");
}
Test(wire_live, manifest_flags_disagree, .timeout = 60)
{
	bad_manifest(M_FLAGS, "device vcpu 0: flags");
}
Test(wire_live, manifest_foreign_device, .timeout = 60)
{
	bad_manifest(M_FOREIGN, "device class 0x4242 0: the source's VM has it");
}
Test(wire_live, manifest_device_missing, .timeout = 60)
{
	bad_manifest(M_MISSING, "device vcpu 0: this VM has it, the source's does not");
}
Test(wire_live, manifest_device_twice, .timeout = 60)
{
	bad_manifest(M_TWICE, "device vcpu 0: listed twice");
}
Test(wire_live, manifest_description_too_long, .timeout = 60)
{
	bad_manifest(M_DESC, "device vcpu 0: a description of 233 bytes");   /* MIG_MANIFEST_DESC_MAX + 1 */
}

enum corrupt { C_MAGIC, C_VERSION, C_TYPE_ZERO, C_TYPE_UNKNOWN, C_LENGTH, C_CHECKSUM, C_LIST,
	       C_DATA, C_SEQ, C_PFN, C_ROUND, C_COUNT, C_ZERO_COUNT };

/* Seals f again after a change to its meta: a frame whose checksum holds,
 * so only the field itself is wrong. */
static void pages_reseal(struct pages_frame *f)
{
	struct iovec meta = { &f->ph, sizeof(f->ph) + sizeof(f->ent) };

	mig_frame_seal(&f->h, MIG_FRAME_PAGES, le32toh(f->h.flags), le64toh(f->h.seq), &meta, 1);
}

static void corrupted_frame(enum corrupt what, const char *needle)
{
	struct rig g;
	struct xport_conn ctl, data;
	struct pages_frame f;
	char text[600];

	rig_up(&g, "target", 1);
	rig_setup(&g, &ctl, &data);
	/* One PAGES frame: page 600 filled with 0xab, then one field broken. */
	pages_frame(&f, what == C_SEQ ? data.tx_seq + 5 : data.tx_seq + 1,
		    what == C_PFN ? (1ULL << 40) : 600, what == C_ROUND ? 3 : 0, 0, 0xab);
	switch (what) {
	case C_MAGIC: f.h.magic ^= 0x01000000; break;
	case C_VERSION: f.h.version = htole16(MIG_WIRE_VERSION + 1); break;
	case C_TYPE_ZERO: f.h.type = 0; break;
	case C_TYPE_UNKNOWN: f.h.type = htole16(999); break;
	case C_LENGTH: f.h.length = htole32(MIG_PAGES_META_MAX + 1); break;
	case C_CHECKSUM: f.h.checksum ^= 1; break;
	case C_LIST: f.ent.page ^= 0x01; break;
	case C_DATA: f.data[100] ^= 0x10; break;
	case C_COUNT: f.ph.count = 257; pages_reseal(&f); break;
	case C_ZERO_COUNT: f.ph.zero_count = 2; pages_reseal(&f); break;
	case C_SEQ: case C_PFN: case C_ROUND: break;
	}
	send_pages(&data, &f);

	/* The destination aborts, says why, and drops the VM it prepared. */
	expect_abort(&ctl, text, sizeof(text));
	cr_assert_not_null(strstr(text, needle), "abort reason lacks '%s': %s", needle, text);
	rig_finish(&g, &ctl, &data);
}

Test(wire_live, corrupt_magic, .timeout = 60) { corrupted_frame(C_MAGIC, "magic"); }
Test(wire_live, corrupt_version, .timeout = 60) { corrupted_frame(C_VERSION, "version"); }
Test(wire_live, corrupt_type_zero, .timeout = 60) { corrupted_frame(C_TYPE_ZERO, "invalid frame type"); }
Test(wire_live, corrupt_type_unknown, .timeout = 60) { corrupted_frame(C_TYPE_UNKNOWN, "unknown frame type"); }
Test(wire_live, corrupt_length, .timeout = 60) { corrupted_frame(C_LENGTH, "exceeds the limit"); }
Test(wire_live, corrupt_checksum, .timeout = 60) { corrupted_frame(C_CHECKSUM, "checksum mismatch on PAGES"); }
Test(wire_live, corrupt_page_list, .timeout = 60) { corrupted_frame(C_LIST, "checksum mismatch on PAGES"); }
Test(wire_live, corrupt_page_data, .timeout = 60) { corrupted_frame(C_DATA, "page data checksum mismatch"); }
Test(wire_live, frame_out_of_order, .timeout = 60) { corrupted_frame(C_SEQ, "out of order"); }
Test(wire_live, page_outside_guest, .timeout = 60) { corrupted_frame(C_PFN, "outside the guest"); }
Test(wire_live, pages_of_another_round, .timeout = 60) { corrupted_frame(C_ROUND, "round 3"); }
Test(wire_live, pages_count_over_the_limit, .timeout = 60)
{
	corrupted_frame(C_COUNT, "PAGES frame with 257 pages on stream 1: 1 to 256 allowed");
}
Test(wire_live, pages_zero_count_over_count, .timeout = 60)
{
	corrupted_frame(C_ZERO_COUNT, "PAGES frame says 2 of its 1 pages are zero");
}

/* ROUND_END must count the PAGES frames its stream carried. */
Test(wire_live, round_end_with_wrong_frame_count, .timeout = 60)
{
	struct rig g;
	struct xport_conn ctl, data;
	struct pages_frame f;
	char text[600];

	rig_up_with_page(&g, "target", &ctl, &data, &f);
	send_pages(&data, &f);
	send_round_end(&data, 0, false, 2);
	expect_abort(&ctl, text, sizeof(text));
	cr_assert_not_null(strstr(text, "2 frames) after 1 frames"), "%s", text);
	rig_finish(&g, &ctl, &data);
}

/* A LIVE frame whose data the guest changed in flight (here: damaged after
 * sealing) is not fatal by itself, but its page must come again intact
 * before the last round ends.  Without that the destination refuses to go
 * on, naming the page. */
Test(wire_live, torn_live_page_never_resent, .timeout = 60)
{
	struct rig g;
	struct xport_conn ctl, data;
	struct pages_frame f;
	char text[600];

	rig_up(&g, "target", 1);
	rig_setup(&g, &ctl, &data);
	pages_frame(&f, data.tx_seq + 1, 600, 0, MIG_FRAME_F_LIVE, 0xab);
	f.data[7] ^= 1;
	send_pages(&data, &f);
	send_round_end(&data, 0, false, 1);
	send_round_end(&data, 1, true, 0);
	expect_abort(&ctl, text, sizeof(text));
	cr_assert_not_null(strstr(text, "1 pages arrived damaged and were not sent again (the "
				  "first is page 0x258)"), "%s", text);
	rig_finish(&g, &ctl, &data);
}

/* The same torn page sent again intact in the next round clears it: the
 * destination passes the last round and goes on to load, where the device
 * state that was never sent is what it then reports. */
Test(wire_live, torn_live_page_resent_is_accepted, .timeout = 60)
{
	struct rig g;
	struct xport_conn ctl, data;
	struct pages_frame f;
	struct mig_loaded l;

	rig_up(&g, "target", 1);
	rig_setup(&g, &ctl, &data);
	pages_frame(&f, data.tx_seq + 1, 600, 0, MIG_FRAME_F_LIVE, 0xab);
	f.data[7] ^= 1;
	send_pages(&data, &f);
	send_round_end(&data, 0, false, 1);
	pages_frame(&f, data.tx_seq + 1, 600, 1, 0, 0xcd);
	send_pages(&data, &f);
	send_round_end(&data, 1, true, 1);
	expect_load_refused(&ctl, &l);
	cr_assert_eq(l.torn_pages, 1);
	cr_assert_null(strstr(l.msg, "damaged"), "%s", l.msg);
	cr_assert_not_null(strstr(l.msg, "no END"), "%s", l.msg);
	rig_finish(&g, &ctl, &data);
}

/* Rounds overlap across streams: stream 1 ends round 0 and at once sends a
 * round-1 copy of page 600, while stream 2 still carries its round-0 copy.
 * The destination must not read on past stream 1's ROUND_END until stream 2
 * reaches its own: reading ahead would let the older copy land last, and
 * the destination refuses a PAGES frame of the next round ("PAGES frame of
 * round 1 ... during round 0").  Both copies and the last round pass; the
 * device state that was never sent is what it then reports. */
Test(wire_live, round_barrier_holds_a_stream_that_runs_ahead, .timeout = 60)
{
	struct rig g;
	struct xport_conn ctl, data[2];
	struct pages_frame f;
	struct mig_loaded l;

	rig_up(&g, "target", 2);
	rig_setup(&g, &ctl, data);
	send_round_end(&data[0], 0, false, 0);
	pages_frame(&f, data[0].tx_seq + 1, 600, 1, 0, 0xcd);
	send_pages(&data[0], &f);
	send_round_end(&data[0], 1, true, 1);
	usleep(200 * 1000);     /* time enough to read stream 1 ahead, were it allowed */
	pages_frame(&f, data[1].tx_seq + 1, 600, 0, 0, 0xab);
	send_pages(&data[1], &f);
	send_round_end(&data[1], 0, false, 1);
	send_round_end(&data[1], 1, true, 0);
	expect_load_refused(&ctl, &l);
	/* what stops it is the device state that never came, not the rounds */
	cr_assert_not_null(strstr(l.msg, "the last round ended before its state did"), "%s",
			   l.msg);
	rig_finish(&g, &ctl, data);
}

/* Each data stream has its own receiver thread.  Two streams that end the
 * same round, one saying it is the last and one not, cannot both be right:
 * the destination refuses, whichever thread arrives second. */
Test(wire_live, streams_disagree_on_the_last_round, .timeout = 60)
{
	struct rig g;
	struct xport_conn ctl, data[2];
	char text[600];

	rig_up(&g, "target", 2);
	rig_setup(&g, &ctl, data);
	send_round_end(&data[0], 0, true, 0);
	send_round_end(&data[1], 0, false, 0);
	expect_abort(&ctl, text, sizeof(text));
	cr_assert_not_null(strstr(text, "streams disagree on whether round 0 is the last"), "%s",
			   text);
	rig_finish(&g, &ctl, data);
}

/* Stream 1's receiver waits at the round barrier when stream 2 carries a
 * damaged frame.  The failure must reach the source with its own reason
 * (not "stopped at the barrier"), and the waiting receiver must be let go,
 * or the destination could not drop the VM it prepared. */
Test(wire_live, a_failing_stream_releases_one_waiting_at_the_barrier, .timeout = 60)
{
	struct rig g;
	struct xport_conn ctl, data[2];
	struct pages_frame f;
	char text[600];

	rig_up(&g, "target", 2);
	rig_setup(&g, &ctl, data);
	send_round_end(&data[0], 0, false, 0);
	usleep(100 * 1000);     /* stream 1 is at the barrier now */
	pages_frame(&f, data[1].tx_seq + 1, 600, 0, 0, 0xab);
	f.h.checksum ^= 1;
	send_pages(&data[1], &f);
	expect_abort(&ctl, text, sizeof(text));
	cr_assert_not_null(strstr(text, "stream 2"), "%s", text);
	cr_assert_not_null(strstr(text, "checksum mismatch"), "%s", text);
	rig_finish(&g, &ctl, data);
}

/* The source goes away in the middle of a frame's page data: the
 * destination must say so, not check the half-received page as if it were
 * whole (which reported a checksum mismatch). */
Test(wire_live, source_gone_in_the_middle_of_page_data, .timeout = 60)
{
	struct rig g;
	struct xport_conn ctl, data;
	struct pages_frame f;
	char text[600];

	rig_up_with_page(&g, "target", &ctl, &data, &f);
	write_all(data.fd, &f, offsetof(struct pages_frame, data) + 100);
	shutdown(data.fd, SHUT_WR);
	expect_abort(&ctl, text, sizeof(text));
	cr_assert_not_null(strstr(text, "stream 1: the source closed it"), "%s", text);
	rig_finish(&g, &ctl, &data);
}

/* Device state that loads: a lab VM of the rig's shape, booted, paused
 * and saved here, as a source would send it: each device with state as one
 * FINAL|END chunk in round `round`.  Returns the frames sent. */
static unsigned send_valid_state(struct xport_conn *data, uint32_t round)
{
	struct lab_config cfg;
	struct mig_error err = { 0 };
	struct mig_walk w = { 0 };
	struct lab_vm *vm;
	struct mig_vm *mv;
	struct mig_buf *states;
	unsigned frames = 0;

	rig_config(&cfg);
	cr_assert_eq(lab_vm_create(&cfg, &vm, &err), 0, "%s", err.msg);
	cr_assert_eq(lab_vm_start(vm, &err), 0, "%s", err.msg);
	usleep(20000);
	cr_assert_eq(lab_vm_pause(vm, &err), 0, "%s", err.msg);
	mv = lab_vm_mig(vm);
	cr_assert_eq(mig_vm_walk(mv, MIG_STAGE_SAVE, &w, &err), 0, "%s", err.msg);
	states = calloc(mv->nr_devices, sizeof(*states));
	cr_assert_not_null(states);
	cr_assert_eq(mig_vm_save(mv, states, &err), 0, "%s", err.msg);
	for (unsigned i = 0; i < mv->nr_devices; i++) {
		const struct mig_device *d = mv->devices[i];

		if (!mig_device_has_state(d))
			continue;
		send_device_data(data, d->cls->id, d->id, 0, round,
				 MIG_FRAME_F_FINAL | MIG_FRAME_F_END, states[i].data,
				 (uint32_t)states[i].len);
		frames++;
		mig_buf_free(&states[i]);
	}
	free(states);
	lab_vm_destroy(vm);
	return frames;
}

/* Sends a SUMS_REQUEST and checks the answer against sums of `image`. */
static void expect_sums(struct xport_conn *ctl, const uint8_t *image, uint64_t first,
			uint32_t count, uint32_t per)
{
	struct mig_sums_request q = { first, count, per };
	struct mig_error err = { 0 };
	struct mig_frame_hdr fh;
	struct mig_buf pl = { 0 };
	uint64_t *want = calloc(count, sizeof(*want));

	cr_assert_not_null(want);
	cr_assert_eq(xport_conn_send(ctl, MIG_FRAME_SUMS_REQUEST, 0, &q, sizeof(q), &err), 0, "%s",
		     err.msg);
	cr_assert_eq(xport_conn_recv(ctl, &fh, &pl, 30000, &err), 0, "%s", err.msg);
	cr_assert_eq(fh.type, MIG_FRAME_SUMS, "got %s", mig_frame_type_to_string(fh.type));
	cr_assert_eq(pl.len, (size_t)count * 8);
	mig_ram_sums(image, first, count, per, want);
	for (uint32_t i = 0; i < count; i++) {
		uint64_t got;

		memcpy(&got, pl.data + i * 8, 8);
		cr_assert_eq(got, want[i], "sum %u of %u pages from page %#llx", i, per,
			     (unsigned long long)first);
	}
	free(want);
	mig_buf_free(&pl);
}

/* After LOADED the source may ask for sums of the destination's RAM, to
 * name the pages that differ when the digests do.  The answers match what
 * was sent (one page of 0xab, the rest never written); a request outside
 * the guest is refused with a clear error, and the VM is dropped. */
Test(wire_live, sums_of_what_the_destination_holds, .timeout = 60)
{
	const uint64_t pages = (64ULL << 20) / 4096;
	struct rig g;
	struct xport_conn ctl, data;
	struct pages_frame f;
	struct mig_error err = { 0 };
	struct mig_buf pl = { 0 };
	struct mig_frame_hdr fh;
	struct mig_loaded l;
	struct mig_sums_request bad = { pages - 100, 512, 1 };
	uint8_t *image = calloc(pages, 4096);
	char text[600];

	cr_assert_not_null(image);
	rig_up_with_page(&g, "sums", &ctl, &data, &f);
	send_pages(&data, &f);
	send_round_end(&data, 0, true, 1 + send_valid_state(&data, 0));
	memset(image + 600 * 4096, 0xab, 4096);

	cr_assert_eq(xport_conn_recv(&ctl, &fh, &pl, 30000, &err), 0, "%s", err.msg);
	cr_assert_eq(fh.type, MIG_FRAME_LOADED, "got %s", mig_frame_type_to_string(fh.type));
	memcpy(&l, pl.data, sizeof(l));
	cr_assert_geq(l.status, 0, "%.*s", (int)sizeof(l.msg) - 1, l.msg);
	mig_buf_free(&pl);

	expect_sums(&ctl, image, 0, pages / 512, 512);   /* 2 MiB chunks */
	expect_sums(&ctl, image, 512, 512, 1);           /* pages of the chunk with 600 */

	cr_assert_eq(xport_conn_send(&ctl, MIG_FRAME_SUMS_REQUEST, 0, &bad, sizeof(bad), &err), 0,
		     "%s", err.msg);
	expect_abort(&ctl, text, sizeof(text));
	cr_assert_not_null(strstr(text, "outside the guest"), "%s", text);
	rig_finish(&g, &ctl, &data);
	free(image);
}

/*
 * DEVICE_DATA broken one way at a time.  Each is refused as it arrives,
 * naming the device and what is wrong, before anything of it is kept; a
 * state that is well framed but not a device's state is refused at LOAD.
 * Either way the destination keeps nothing.
 */
enum bad_dd { D_FOREIGN, D_NO_KIND, D_BOTH, D_END_PRECOPY, D_NO_PRECOPY, D_NO_STATE, D_GAP,
	      D_AFTER_END, D_LEN, D_ROUND, D_JUNK };

static void bad_device_data(enum bad_dd what, const char *needle)
{
	static const uint8_t junk[40] = { 0xde, 0xad, 0xbe, 0xef, 9, 9, 9 };
	const uint32_t fin = MIG_FRAME_F_FINAL, end = MIG_FRAME_F_END;
	struct rig g;
	struct xport_conn ctl, data;
	struct mig_device_data dd = { MIG_DEV_VCPU, 0, 0, 0, 10 };
	struct mig_loaded l;
	char text[600];

	rig_up(&g, "devdata", 1);
	rig_setup(&g, &ctl, &data);
	switch (what) {
	case D_FOREIGN:
		send_device_data(&data, 0x4242, 0, 0, 0, fin | end, junk, 10);
		break;
	case D_NO_KIND:
		send_device_data(&data, MIG_DEV_VCPU, 0, 0, 0, 0, junk, 10);
		break;
	case D_BOTH:
		send_device_data(&data, MIG_DEV_VCPU, 0, 0, 0, fin | MIG_FRAME_F_PRECOPY, junk, 10);
		break;
	case D_END_PRECOPY:
		send_device_data(&data, MIG_DEV_VCPU, 0, 0, 0, MIG_FRAME_F_PRECOPY | end, junk, 10);
		break;
	case D_NO_PRECOPY:
		send_device_data(&data, MIG_DEV_VCPU, 0, 0, 0, MIG_FRAME_F_PRECOPY, junk, 10);
		break;
	case D_NO_STATE:
		send_device_data(&data, MIG_DEV_MEMORY, 0, 0, 0, fin | end, junk, 10);
		break;
	case D_GAP:
		send_device_data(&data, MIG_DEV_VCPU, 0, 0, 0, fin, junk, 10);
		send_device_data(&data, MIG_DEV_VCPU, 0, 20, 0, fin, junk, 10);
		break;
	case D_AFTER_END:
		send_device_data(&data, MIG_DEV_VCPU, 0, 0, 0, fin | end, junk, 10);
		send_device_data(&data, MIG_DEV_VCPU, 0, 10, 0, fin, junk, 10);
		break;
	case D_LEN:
		dd.len = 11;
		send_dd_raw(&data, &dd, fin, junk, 10);
		break;
	case D_ROUND:
		send_device_data(&data, MIG_DEV_VCPU, 0, 0, 3, fin, junk, 10);
		break;
	case D_JUNK:
		/* every device with state ends, in two chunks for the vCPU */
		send_device_data(&data, MIG_DEV_VCPU, 0, 0, 0, fin, junk, 16);
		send_device_data(&data, MIG_DEV_VCPU, 0, 16, 0, fin | end, junk + 16, 24);
		send_device_data(&data, MIG_DEV_PLATFORM, 0, 0, 0, fin | end, junk, 40);
		send_round_end(&data, 0, true, 3);
		expect_load_refused(&ctl, &l);
		cr_assert_not_null(strstr(l.msg, needle), "'%s' does not say '%s'", l.msg, needle);
		rig_finish(&g, &ctl, &data);
		return;
	}
	expect_abort(&ctl, text, sizeof(text));
	cr_assert_not_null(strstr(text, needle), "'%s' does not say '%s'", text, needle);
	rig_finish(&g, &ctl, &data);
}

Test(wire_live, device_data_for_a_foreign_device, .timeout = 60)
{
	bad_device_data(D_FOREIGN, "DEVICE_DATA for device 0x4242 0, which this VM does not have");
}
Test(wire_live, device_data_of_no_kind, .timeout = 60)
{
	bad_device_data(D_NO_KIND, "DEVICE_DATA for vcpu 0 is neither pre-copy nor final data");
}
Test(wire_live, device_data_of_both_kinds, .timeout = 60)
{
	bad_device_data(D_BOTH, "DEVICE_DATA for vcpu 0 is neither pre-copy nor final data");
}
Test(wire_live, device_data_end_on_pre_copy, .timeout = 60)
{
	bad_device_data(D_END_PRECOPY, "DEVICE_DATA for vcpu 0: END on pre-copy data");
}
Test(wire_live, device_data_pre_copy_for_a_class_without, .timeout = 60)
{
	bad_device_data(D_NO_PRECOPY, "DEVICE_DATA for vcpu 0, whose class has no pre-copy data");
}
Test(wire_live, device_data_for_a_device_without_state, .timeout = 60)
{
	bad_device_data(D_NO_STATE, "DEVICE_DATA for memory 0, whose class has no state");
}
Test(wire_live, device_data_with_a_gap, .timeout = 60)
{
	bad_device_data(D_GAP, "DEVICE_DATA for vcpu 0 at offset 20 of its final data, 10 bytes "
			"of it came before");
}
Test(wire_live, device_data_after_its_end, .timeout = 60)
{
	bad_device_data(D_AFTER_END, "DEVICE_DATA for vcpu 0 after its last chunk");
}
Test(wire_live, device_data_length_disagrees, .timeout = 60)
{
	bad_device_data(D_LEN, "DEVICE_DATA frame of 34 bytes says it carries 11 bytes");
}
Test(wire_live, device_data_of_another_round, .timeout = 60)
{
	bad_device_data(D_ROUND, "DEVICE_DATA of round 3 on stream 1 during round 0");
}
Test(wire_live, device_state_that_is_not_one, .timeout = 60)
{
	bad_device_data(D_JUNK, "platform 0: vm state: bad magic");
}

/* Strangers that connect to the migration port and send nothing (no key is
 * needed for that) must not hold the migration up: the handshakes are read
 * concurrently, each connection on a clock of its own, so the real streams
 * get through at once; the idle ones are answered with ERROR and counted. */
Test(wire_live, idle_connections_do_not_block_the_streams, .timeout = 60)
{
	struct rig g;
	struct xport_conn ctl, data[2], idle[3];
	struct mig_loaded l;
	double t;

	rig_up(&g, "target", 2);
	for (int i = 0; i < 3; i++) {
		struct mig_error err = { 0 };
		struct xport_endpoint ep;
		char url[160];
		int fd;

		snprintf(url, sizeof(url), "tcp://%s", g.addr);
		cr_assert_eq(xport_endpoint_parse(url, &ep, &err), 0, "%s", err.msg);
		fd = xport_connect(&ep, 5000, &err);
		cr_assert_geq(fd, 0, "%s", err.msg);
		cr_assert_eq(xport_conn_init(&idle[i], fd, &err), 0, "%s", err.msg);
	}
	usleep(100 * 1000);     /* the destination has accepted them all */
	t = fixture_now();
	rig_setup(&g, &ctl, data);
	t = fixture_now() - t;
	cr_assert_lt(t, 3.0, "three idle connections held the streams up for %.1f s", t);
	for (int i = 0; i < 3; i++) {
		struct mig_error err = { 0 };
		struct mig_frame_hdr fh;
		struct mig_buf pl = { 0 };

		cr_assert_eq(xport_conn_recv(&idle[i], &fh, &pl, 10000, &err), 0, "%s", err.msg);
		cr_assert_eq(fh.type, MIG_FRAME_ERROR, "got %s", mig_frame_type_to_string(fh.type));
		mig_buf_free(&pl);
		xport_conn_close(&idle[i]);
	}
	send_round_end(&data[0], 0, true, 0);
	send_round_end(&data[1], 0, true, 0);
	expect_load_refused(&ctl, &l);
	cr_assert_eq(l.rejected_streams, 3);
	rig_finish(&g, &ctl, data);
}

/*
 * POSTCOPY broken one way at a time: the destination refuses it before
 * COMMIT, says why, and keeps nothing (the source still owns the VM).
 */
enum bad_postcopy { BP_COUNT, BP_PAGES, BP_LENGTH, BP_TWICE, BP_STOP_COPY };

/*
 * POSTCOPY then a stop-and-copy end: ABORT saying so.  Or, when the round's
 * end on the data stream overtook POSTCOPY on the control stream, LOADED
 * refusing the round (no device state came) and then ABORT: the
 * destination took the round as a stop-and-copy and never went post-copy.
 */
static void expect_stop_copy_refused(struct xport_conn *ctl, const char *needle)
{
	struct mig_error err = { 0 };
	struct mig_frame_hdr fh;
	struct mig_buf pl = { 0 };
	struct mig_loaded l;
	char text[600];

	cr_assert_eq(xport_conn_recv(ctl, &fh, &pl, 30000, &err), 0, "%s", err.msg);
	if (fh.type == MIG_FRAME_LOADED) {
		cr_assert_eq(pl.len, sizeof(l));
		memcpy(&l, pl.data, sizeof(l));
		mig_buf_free(&pl);
		cr_assert_lt(l.status, 0, "the destination loaded a round POSTCOPY contradicts");
		expect_abort(ctl, text, sizeof(text));
		return;
	}
	abort_text(&fh, &pl, text, sizeof(text));
	cr_assert_not_null(strstr(text, needle), "abort reason lacks '%s': %s", needle, text);
}

static void bad_postcopy(enum bad_postcopy what, const char *needle)
{
	struct rig g;
	struct xport_conn ctl, data;
	struct mig_error err = { 0 };
	struct mig_buf b = { 0 };
	struct mig_postcopy pc = { .nr_pages = 16384, .to_come = 2, .words = 256 };
	uint64_t words[256] = { 0 };
	char text[600];

	rig_up(&g, "target", 1);
	rig_setup(&g, &ctl, &data);
	words[9] = 3;              /* pages 576 and 577 still to come */
	if (what == BP_COUNT)
		pc.to_come = 3;
	if (what == BP_PAGES)
		pc.nr_pages = 16385;
	mig_wire_le(&mig_wl_postcopy, &pc, 1);
	mig_wire_le64s(words, 256);
	cr_assert_eq(mig_buf_append(&b, &pc, sizeof(pc)), 0);
	cr_assert_eq(mig_buf_append(&b, words, what == BP_LENGTH ? 8 * 255 : sizeof(words)), 0);
	cr_assert_eq(xport_conn_send(&ctl, MIG_FRAME_POSTCOPY, 0, b.data, b.len, &err), 0, "%s",
		     err.msg);
	if (what == BP_TWICE)
		cr_assert_eq(xport_conn_send(&ctl, MIG_FRAME_POSTCOPY, 0, b.data, b.len, &err), 0,
			     "%s", err.msg);
	if (what == BP_STOP_COPY)
		send_round_end(&data, 0, true, 0);
	mig_buf_free(&b);
	if (what == BP_STOP_COPY) {
		expect_stop_copy_refused(&ctl, needle);
		rig_finish(&g, &ctl, &data);
		return;
	}
	expect_abort(&ctl, text, sizeof(text));
	cr_assert_not_null(strstr(text, needle), "abort reason lacks '%s': %s", needle, text);
	rig_finish(&g, &ctl, &data);
}

Test(wire_live, postcopy_count_disagrees_with_its_bitmap, .timeout = 60)
{
	bad_postcopy(BP_COUNT, "POSTCOPY says 3 pages are to come, its bitmap 2");
}

Test(wire_live, postcopy_for_another_guest, .timeout = 60)
{
	bad_postcopy(BP_PAGES, "the VM has 16384 pages");
}

Test(wire_live, postcopy_bitmap_cut_short, .timeout = 60)
{
	bad_postcopy(BP_LENGTH, "the VM has 16384 pages");
}

Test(wire_live, postcopy_twice, .timeout = 60)
{
	bad_postcopy(BP_TWICE, "unexpected POSTCOPY frame");
}

Test(wire_live, postcopy_then_a_stop_and_copy_end, .timeout = 60)
{
	bad_postcopy(BP_STOP_COPY, "POSTCOPY came, but the last round ended as a stop-and-copy");
}
