// SPDX-License-Identifier: MIT
/*
 * Sealed frames (transport/aead.c, docs/protocol.md §1.8): a frame sealed
 * by one end opens at the other and nowhere else; a flipped bit anywhere,
 * a replayed or reordered frame, a frame of another connection, direction
 * or secret, and a clear frame on a sealed connection are each refused
 * with a clear error; and on a framed connection the bytes on the wire
 * hold none of the payload.
 */
#include <criterion/criterion.h>
#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <migrate/aead.h>
#include <migrate/control.h>
#include <migrate/transport.h>
#include <migrate/wire.h>

static const uint8_t secret[32] = "a per-migration secret, 32 byte";

static struct xport_aead *keys(const char *salt, bool initiator)
{
	struct mig_error err = { 0 };
	struct xport_aead *a;

	cr_assert_eq(xport_aead_new(secret, sizeof(secret), salt, strlen(salt), "test", "ctx", 3,
				    initiator, &a, &err), 0, "%s", err.msg);
	return a;
}

struct sealed {
	struct mig_frame_hdr h;
	uint8_t payload[64];
	uint8_t tag[XPORT_AEAD_TAG];
};

static void seal_one(struct xport_aead *a, uint64_t seq, struct sealed *f)
{
	struct mig_error err = { 0 };
	struct iovec iov = { f->payload, sizeof(f->payload) };

	memset(f->payload, 'p', sizeof(f->payload));
	mig_frame_seal(&f->h, MIG_FRAME_EVENT, 0, seq, &iov, 1);
	cr_assert_eq(xport_aead_seal(a, &f->h, 0, &iov, 1, f->tag, &err), 0, "%s", err.msg);
}

static int open_one(struct xport_aead *a, struct sealed *f, struct mig_error *err)
{
	struct iovec iov = { f->payload, sizeof(f->payload) };

	return xport_aead_open(a, &f->h, &iov, 1, f->tag, err);
}

Test(aead, what_one_end_seals_the_other_opens)
{
	struct xport_aead *a = keys("salt", true), *b = keys("salt", false);
	struct mig_error err = { 0 };
	struct sealed f;
	uint8_t plain[64];

	memset(plain, 'p', sizeof(plain));
	for (uint64_t seq = 1; seq <= 3; seq++) {
		seal_one(a, seq, &f);
		cr_assert(le32toh(f.h.flags) & MIG_FRAME_F_SEALED);
		cr_assert_neq(memcmp(f.payload, plain, sizeof(plain)), 0, "the payload went in clear");
		cr_assert_eq(open_one(b, &f, &err), 0, "%s", err.msg);
		cr_assert_eq(memcmp(f.payload, plain, sizeof(plain)), 0);
	}
	/* and the other way */
	seal_one(b, 1, &f);
	cr_assert_eq(open_one(a, &f, &err), 0, "%s", err.msg);
	xport_aead_free(a);
	xport_aead_free(b);
}

Test(aead, a_flipped_bit_anywhere_is_refused)
{
	struct xport_aead *a = keys("salt", true), *b = keys("salt", false);
	struct sealed f;

	for (size_t bit = 0; bit < sizeof(f) * 8; bit += 7) {
		struct mig_error err = { 0 };

		seal_one(a, 5, &f);
		((uint8_t *)&f)[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		cr_assert_eq(open_one(b, &f, &err), -EBADMSG, "bit %zu flipped, and it opened", bit);
		cr_assert(strstr(err.msg, "does not open"), "%s", err.msg);
	}
	xport_aead_free(a);
	xport_aead_free(b);
}

/* Another seq in the header (a replayed or reordered frame whose header
 * was made to fit), another connection's salt, another secret, the
 * sender's own direction: none opens. */
Test(aead, a_frame_of_another_place_does_not_open)
{
	struct xport_aead *a = keys("salt", true), *b = keys("salt", false);
	struct xport_aead *other = keys("another connection", false), *self = keys("salt", true);
	struct xport_aead *stranger;
	struct mig_error err = { 0 };
	struct sealed f, g;

	cr_assert_eq(xport_aead_new("another secret, also 32 bytes...", 32, "salt", 4, "test",
				    "ctx", 3, false, &stranger, &err), 0, "%s", err.msg);
	seal_one(a, 7, &f);
	g = f;
	g.h.seq = htole64(8);
	cr_assert_eq(open_one(b, &g, &err), -EBADMSG, "a frame moved to another seq opened");
	g = f;
	cr_assert_eq(open_one(other, &g, &err), -EBADMSG, "another connection's keys opened it");
	g = f;
	cr_assert_eq(open_one(stranger, &g, &err), -EBADMSG, "another secret opened it");
	g = f;
	cr_assert_eq(open_one(self, &g, &err), -EBADMSG, "the sender's own direction opened it");
	g = f;
	cr_assert_eq(open_one(b, &g, &err), 0, "%s", err.msg);
	xport_aead_free(a);
	xport_aead_free(b);
	xport_aead_free(other);
	xport_aead_free(self);
	xport_aead_free(stranger);
}

/* A frame's data after it (part 1): sealed from one place into another,
 * opened in place, bound to its frame's seq and tag. */
Test(aead, data_after_a_frame)
{
	struct xport_aead *a = keys("salt", true), *b = keys("salt", false);
	static uint8_t ram[3][4096], wire[3][4096];
	struct iovec in[3], out[3];
	struct mig_error err = { 0 };
	uint8_t tag[XPORT_AEAD_TAG];

	for (int i = 0; i < 3; i++) {
		memset(ram[i], 'a' + i, sizeof(ram[i]));
		in[i] = (struct iovec){ ram[i], sizeof(ram[i]) };
		out[i] = (struct iovec){ wire[i], sizeof(wire[i]) };
	}
	cr_assert_eq(xport_aead_seal_data(a, 9, in, out, 3, tag, &err), 0, "%s", err.msg);
	cr_assert_neq(memcmp(wire[1], ram[1], 4096), 0);
	cr_assert_eq(xport_aead_open_data(b, 10, out, 3, tag, &err), -EBADMSG,
		     "data opened under another frame's seq");
	cr_assert(strstr(err.msg, "does not open"), "%s", err.msg);
	/* the failed open left garbage; seal again and open right */
	cr_assert_eq(xport_aead_seal_data(a, 9, in, out, 3, tag, &err), 0, "%s", err.msg);
	cr_assert_eq(xport_aead_open_data(b, 9, out, 3, tag, &err), 0, "%s", err.msg);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(memcmp(wire[i], ram[i], 4096), 0);
	wire[2][100] ^= 1;
	cr_assert_eq(xport_aead_open_data(b, 9, out, 3, tag, &err), -EBADMSG);
	xport_aead_free(a);
	xport_aead_free(b);
}

/* ---- on a framed connection, through a man in the middle ---- */

enum mitm_act { PASS, FLIP, DUPLICATE };

struct mitm {
	int from, to;             /* reads from, writes to */
	enum mitm_act act;
	size_t at;                /* FLIP: the byte; DUPLICATE: the frame's start */
	size_t frame_len;         /* DUPLICATE: its length */
	uint8_t seen[8192];
	size_t n;
};

static void *mitm_run(void *arg)
{
	struct mitm *m = arg;
	uint8_t b[4096];
	ssize_t k;

	while ((k = read(m->from, b, sizeof(b))) > 0) {
		size_t off = m->n;

		for (ssize_t i = 0; i < k && m->n < sizeof(m->seen); i++)
			m->seen[m->n++] = b[i];
		if (m->act == FLIP && m->at >= off && m->at < off + (size_t)k)
			b[m->at - off] ^= 0x20;
		if (write(m->to, b, (size_t)k) != k)
			break;
		if (m->act == DUPLICATE && m->n >= m->at + m->frame_len) {
			cr_assert_eq(write(m->to, m->seen + m->at, m->frame_len),
				     (ssize_t)m->frame_len);
			m->act = PASS;
		}
	}
	close(m->to);
	return NULL;
}

struct wire_pair {
	struct xport_conn tx, rx;
	struct mitm m;
	pthread_t th;
};

/* tx -> mitm -> rx, both ends sealed (or not) */
static void pair_up(struct wire_pair *p, enum mitm_act act, size_t at, bool seal_tx, bool seal_rx)
{
	struct mig_error err = { 0 };
	int a[2], b[2];

	memset(p, 0, sizeof(*p));
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, b), 0);
	cr_assert_eq(xport_conn_init(&p->tx, a[0], &err), 0, "%s", err.msg);
	cr_assert_eq(xport_conn_init(&p->rx, b[1], &err), 0, "%s", err.msg);
	p->tx.aead = seal_tx ? keys("conn", true) : NULL;
	p->rx.aead = seal_rx ? keys("conn", false) : NULL;
	p->m = (struct mitm){ .from = a[1], .to = b[0], .act = act, .at = at };
	pthread_create(&p->th, NULL, mitm_run, &p->m);
}

static void pair_down(struct wire_pair *p)
{
	xport_conn_close(&p->tx);
	pthread_join(p->th, NULL);
	close(p->m.from);
	xport_conn_close(&p->rx);
}

static const char marker[] = "plaintext-marker-the-wire-must-not-show";

static int recv_one(struct wire_pair *p, struct mig_buf *pl, struct mig_error *err)
{
	struct mig_frame_hdr h;

	return xport_conn_recv(&p->rx, &h, pl, 5000, err);
}

static bool seen_marker(const struct mitm *m)
{
	return memmem(m->seen, m->n, marker, sizeof(marker) - 1) != NULL;
}

Test(aead_conn, the_wire_shows_no_payload)
{
	struct mig_error err = { 0 };
	struct mig_buf pl = { 0 };
	struct wire_pair p;

	pair_up(&p, PASS, 0, true, true);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(xport_conn_send(&p.tx, MIG_FRAME_EVENT, 0, marker, sizeof(marker), &err),
			     0, "%s", err.msg);
		cr_assert_eq(recv_one(&p, &pl, &err), 0, "%s", err.msg);
		cr_assert_eq(pl.len, sizeof(marker));
		cr_assert_str_eq((char *)pl.data, marker);
	}
	pair_down(&p);
	cr_assert_eq(p.m.n, 3 * (sizeof(struct mig_frame_hdr) + sizeof(marker) + XPORT_AEAD_TAG));
	cr_assert(!seen_marker(&p.m), "the payload crossed the wire in clear");
	mig_buf_free(&pl);

	/* the same in clear shows it: the capture works */
	pair_up(&p, PASS, 0, false, false);
	cr_assert_eq(xport_conn_send(&p.tx, MIG_FRAME_EVENT, 0, marker, sizeof(marker), &err), 0);
	cr_assert_eq(recv_one(&p, &pl, &err), 0, "%s", err.msg);
	pair_down(&p);
	cr_assert(seen_marker(&p.m));
	mig_buf_free(&pl);
}

Test(aead_conn, a_flipped_byte_is_refused)
{
	/* in the header, the payload and the tag of the second frame */
	size_t frame = sizeof(struct mig_frame_hdr) + sizeof(marker) + XPORT_AEAD_TAG;
	const size_t at[] = { frame + 14, frame + 40, frame + frame - 3 };

	for (unsigned i = 0; i < 3; i++) {
		struct mig_error err = { 0 };
		struct mig_buf pl = { 0 };
		struct wire_pair p;
		int r;

		pair_up(&p, FLIP, at[i], true, true);
		for (int k = 0; k < 2; k++)
			cr_assert_eq(xport_conn_send(&p.tx, MIG_FRAME_EVENT, 0, marker, sizeof(marker),
						     &err), 0, "%s", err.msg);
		cr_assert_eq(recv_one(&p, &pl, &err), 0, "%s", err.msg);
		r = recv_one(&p, &pl, &err);
		cr_assert_lt(r, 0, "byte %zu flipped, and the frame was taken", at[i]);
		cr_assert(strstr(err.msg, "does not open") || strstr(err.msg, "frame header"),
			  "byte %zu: %s", at[i], err.msg);
		pair_down(&p);
		mig_buf_free(&pl);
	}
}

Test(aead_conn, a_replayed_frame_is_refused)
{
	size_t frame = sizeof(struct mig_frame_hdr) + sizeof(marker) + XPORT_AEAD_TAG;
	struct mig_error err = { 0 };
	struct mig_buf pl = { 0 };
	struct wire_pair p;

	pair_up(&p, DUPLICATE, 0, true, true);
	p.m.frame_len = frame;
	cr_assert_eq(xport_conn_send(&p.tx, MIG_FRAME_EVENT, 0, marker, sizeof(marker), &err), 0);
	cr_assert_eq(recv_one(&p, &pl, &err), 0, "%s", err.msg);
	cr_assert_lt(recv_one(&p, &pl, &err), 0, "the replayed frame was taken");
	cr_assert(strstr(err.msg, "replayed"), "%s", err.msg);
	pair_down(&p);
	mig_buf_free(&pl);
}

Test(aead_conn, clear_frames_on_a_sealed_connection_are_refused)
{
	struct mig_error err = { 0 };
	struct mig_buf pl = { 0 };
	struct wire_pair p;

	pair_up(&p, PASS, 0, false, true);
	cr_assert_eq(xport_conn_send(&p.tx, MIG_FRAME_EVENT, 0, marker, sizeof(marker), &err), 0);
	cr_assert_eq(recv_one(&p, &pl, &err), -EPROTO);
	cr_assert(strstr(err.msg, "came in clear on a sealed connection"), "%s", err.msg);
	pair_down(&p);
	/* and sealed ones on a clear connection */
	mig_error_clear(&err);
	pair_up(&p, PASS, 0, true, false);
	cr_assert_eq(xport_conn_send(&p.tx, MIG_FRAME_EVENT, 0, marker, sizeof(marker), &err), 0);
	cr_assert_eq(recv_one(&p, &pl, &err), -EPROTO);
	cr_assert(strstr(err.msg, "is sealed, and this connection carries frames in clear"), "%s",
		  err.msg);
	pair_down(&p);
	mig_buf_free(&pl);
}

/* The control connection's keys: both ends derive the same pair from the
 * key file and the two nonces, and another nonce gives others. */
Test(aead_conn, control_session_keys)
{
	uint8_t na[XPORT_NONCE_LEN] = { 1 }, nc[XPORT_NONCE_LEN] = { 2 };
	struct xport_aead *client, *agent, *other;
	struct mig_error err = { 0 };
	struct sealed f;

	cr_assert_eq(mig_ctl_session_keys(secret, sizeof(secret), na, nc, true, &client, &err), 0);
	cr_assert_eq(mig_ctl_session_keys(secret, sizeof(secret), na, nc, false, &agent, &err), 0);
	nc[5] = 9;
	cr_assert_eq(mig_ctl_session_keys(secret, sizeof(secret), na, nc, false, &other, &err), 0);
	seal_one(client, 2, &f);
	cr_assert_eq(open_one(agent, &f, &err), 0, "%s", err.msg);
	seal_one(client, 3, &f);
	cr_assert_eq(open_one(other, &f, &err), -EBADMSG);
	xport_aead_free(client);
	xport_aead_free(agent);
	xport_aead_free(other);
}

/* ---- a migration's streams: who seals (handshake.c) ---- */

#include <migrate/stream.h>

struct acceptor {
	int lfd;
	struct xport_streams who;
	int fds[3];
	struct xport_aead *aeads[3];
	uint64_t rejected;
	struct mig_error err;
	int r;
};

static void *accept_run(void *arg)
{
	struct acceptor *a = arg;

	a->who.aeads = a->aeads;
	a->r = xport_streams_accept(a->lfd, &a->who, a->fds, &a->rejected, &a->err);
	return NULL;
}

/* Two streams' handshake on loopback, the source sealing as src says and
 * the destination wanting what dst says; the source's result. */
static int handshake(uint32_t src, uint32_t dst, struct acceptor *a, int *fds,
		     struct xport_aead **aeads, struct mig_error *err)
{
	struct xport_endpoint ep = { .kind = XPORT_EP_TCP, .host = "127.0.0.1" };
	static const uint8_t id[16] = { 7 };
	char addr[64];
	pthread_t th;
	int r;

	memset(a, 0, sizeof(*a));
	a->lfd = xport_listen(&ep, err);
	cr_assert_geq(a->lfd, 0, "%s", err->msg);
	cr_assert_eq(xport_local_addr(a->lfd, addr, sizeof(addr)), 0);
	a->who = (struct xport_streams){ .id = id, .secret = secret, .n = 2, .encrypt = dst };
	pthread_create(&th, NULL, accept_run, a);
	r = xport_streams_open(&(struct xport_streams){ .addr = addr, .id = id, .secret = secret,
							.n = 2, .encrypt = src, .aeads = aeads },
			       NULL, fds, err);
	if (r < 0) {
		/* the destination goes on waiting for proper streams: give up */
		shutdown(a->lfd, SHUT_RDWR);
	}
	pthread_join(th, NULL);
	close(a->lfd);
	return r;
}

Test(aead_streams, the_source_seals_and_both_ends_hold_the_keys)
{
	struct mig_error err = { 0 };
	struct xport_aead *aeads[3];
	struct acceptor a;
	struct sealed f;
	int fds[3];

	cr_assert_eq(handshake(MIG_ENCRYPT_ALWAYS, MIG_ENCRYPT_NEVER, &a, fds, aeads, &err), 0,
		     "%s", err.msg);
	cr_assert_eq(a.r, 0, "%s", a.err.msg);
	for (int i = 0; i < 3; i++) {
		cr_assert_not_null(aeads[i], "stream %d is not sealed at the source", i);
		cr_assert_not_null(a.aeads[i], "stream %d is not sealed at the destination", i);
	}
	/* stream 1's keys at each end match, and not stream 2's */
	seal_one(aeads[1], 2, &f);
	cr_assert_eq(open_one(a.aeads[2], &f, &err), -EBADMSG, "stream 2's keys opened it");
	seal_one(aeads[1], 2, &f);
	cr_assert_eq(open_one(a.aeads[1], &f, &err), 0, "%s", err.msg);
	seal_one(a.aeads[0], 2, &f);
	cr_assert_eq(open_one(aeads[0], &f, &err), 0, "%s", err.msg);
	for (int i = 0; i < 3; i++) {
		close(fds[i]);
		close(a.fds[i]);
		xport_aead_free(aeads[i]);
		xport_aead_free(a.aeads[i]);
	}
}

Test(aead_streams, on_loopback_auto_stays_clear)
{
	struct mig_error err = { 0 };
	struct xport_aead *aeads[3];
	struct acceptor a;
	int fds[3];

	cr_assert_eq(handshake(MIG_ENCRYPT_AUTO, MIG_ENCRYPT_AUTO, &a, fds, aeads, &err), 0,
		     "%s", err.msg);
	for (int i = 0; i < 3; i++) {
		cr_assert_null(aeads[i]);
		cr_assert_null(a.aeads[i]);
		close(fds[i]);
		close(a.fds[i]);
	}
}

Test(aead_streams, a_destination_that_wants_them_sealed_refuses_clear_streams)
{
	struct mig_error err = { 0 };
	struct xport_aead *aeads[3];
	struct acceptor a;
	int fds[3];

	cr_assert_lt(handshake(MIG_ENCRYPT_NEVER, MIG_ENCRYPT_ALWAYS, &a, fds, aeads, &err), 0);
	cr_assert(strstr(err.msg, "comes in clear, and this migration's streams must be "
			 "encrypted (--encrypt always)"), "%s", err.msg);
	cr_assert_geq(a.rejected, 1);
}
