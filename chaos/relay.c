// SPDX-License-Identifier: MIT
/*
 * The network-fault relay (include/migrate/relay.h, docs/chaos-relay.md).
 * One thread, one poll() over non-blocking sockets: the listener, a wake
 * eventfd for stop(), and two sockets per forwarded connection (a "pair").
 * Each direction of a pair reads into a queue of segments and writes from
 * it; what a toxic holds back (delay, bandwidth, stall, reorder, partition)
 * waits in that queue behind a deadline, and poll's timeout is the nearest
 * one.  Reading stops while a direction holds more than DIR_BOUND bytes,
 * so a slow side pushes back on its peer through TCP as it would without
 * the relay.
 *
 * Frames are parsed as they are read, only to count them and to know where
 * each starts and ends.  The bytes of a frame are held until its size is
 * known (its header; for a PAGES frame also the pages header that gives
 * the data length; for the first STREAM_HELLO its payload, which names the
 * stream), so a toxic that acts "at frame k" acts before any byte of frame
 * k left, and a trigger on stream k can be judged on the hello's own bytes.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <linux/sockios.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <migrate/aead.h>
#include <migrate/relay.h>
#include <migrate/stream.h>
#include <migrate/transport.h>
#include <migrate/wire.h>

#include "util.h"

#define SEG_SIZE        (256U << 10)   /* one read, one segment */
#define DIR_BOUND       (4U << 20)     /* queued bytes before reading stops */
#define PAIRS_MAX       64             /* a migration has at most 17 streams */
#define FREE_SEGS_MAX   32
#define READS_PER_WAKE  4              /* then let the other pairs have a turn */
/* A reset waits (at most this long) for the bytes before it to leave the
 * relay's socket: a RST discards what the kernel still holds, and "the
 * destination got exactly the frames before the trigger" must hold. */
#define RESET_DRAIN_MS  5000
#define REORDER_MAX_MS  10000          /* REORDER with ms 0 */
#define DUP_MAX         (64ULL << 20)  /* a frame's size from a header we do not trust */
#define NO_OFF          UINT64_MAX
#define HDR_LEN         sizeof(struct mig_frame_hdr)
#define HELLO_LEN       sizeof(struct mig_stream_hello)

struct seg {
	struct seg *next;
	uint64_t not_before;   /* ms; 0: as soon as the socket takes it */
	bool shaped;           /* passes the token bucket */
	size_t off, len, cap;
	uint8_t data[];
};

struct parser {
	bool dead;             /* bad magic: bytes only from here on */
	bool known;            /* the current frame's size is known: its bytes flow */
	uint8_t pend[HDR_LEN + HELLO_LEN];   /* the frame's first bytes until then */
	size_t pend_len, need;
	uint64_t frame_end;    /* stream offset past the current frame, once known */
	uint64_t last_end;     /* past the last whole frame taken */
	uint64_t frames;       /* frames seen, the current one counted */
};

struct pair;

struct dir {
	struct pair *p;
	bool to_source;
	int from, to;
	struct parser ps;
	uint64_t off;          /* bytes taken: queued or written */
	uint64_t wr_off;       /* bytes written to `to` */
	struct seg *head, *tail;
	size_t queued;
	uint64_t last_nb;      /* DELAY: deadlines stay in order */
	/* the toxic's marks, stream offsets */
	uint64_t cut_at;       /* bytes from here dropped, then both sides reset */
	uint64_t flip_at;
	uint64_t dup_from, dup_end;
	uint8_t *dup;
	uint64_t block_off, block_until;   /* bytes >= block_off wait until then (ms) */
	bool watching;         /* REORDER: a frame of this direction ending ... */
	uint64_t watch_end;    /* ... here (NO_OFF: the next one) releases the held one */
	bool eof, shut, cut;
	uint64_t drain_since;
	bool want_out;
	uint64_t wake;         /* ms; 0: nothing timed */
};

struct pair {
	struct chaos_relay *r;
	int src, dst;
	bool connecting, dead;
	int index;             /* from the source's STREAM_HELLO; -1 unknown */
	struct dir up, down;   /* up: source -> destination */
};

struct chaos_relay {
	struct chaos_net_spec spec;
	int lfd, efd;
	struct sockaddr_storage dest;
	socklen_t dest_len;
	pthread_t thread;
	atomic_bool stop;
	struct pair *pairs[PAIRS_MAX];
	unsigned npairs, nconns;
	struct seg *free_segs;
	unsigned nfree;
	uint8_t *scratch;
	uint64_t rng;
	bool fired, again;
	uint64_t matched;      /* frames that matched the trigger */
	double tokens;
	uint64_t bucket_ns;
	uint64_t part_until;
	struct dir *held;      /* REORDER */
	pthread_mutex_t lock;  /* rep's fired, what, conns */
	struct chaos_relay_report rep;
	_Atomic uint64_t bytes_up, bytes_down;
};

static const char *const fault_names[] = {
	[CHAOS_NET_NONE] = "none",
	[CHAOS_NET_RESET] = "reset",
	[CHAOS_NET_STALL] = "stall",
	[CHAOS_NET_DELAY] = "delay",
	[CHAOS_NET_BANDWIDTH] = "bandwidth",
	[CHAOS_NET_CORRUPT] = "corrupt",
	[CHAOS_NET_TRUNCATE] = "truncate",
	[CHAOS_NET_DUPLICATE] = "duplicate",
	[CHAOS_NET_REORDER] = "reorder",
	[CHAOS_NET_PARTITION] = "partition",
	[CHAOS_NET_REFUSE] = "refuse",
};
_Static_assert(ARRAY_SIZE(fault_names) == _CHAOS_NET_END, "a name for every fault");

const char *chaos_net_fault_name(enum chaos_net_fault f)
{
	return (unsigned)f < ARRAY_SIZE(fault_names) ? fault_names[f] : NULL;
}

int chaos_net_fault_parse(const char *name)
{
	for (unsigned i = 0; name && i < ARRAY_SIZE(fault_names); i++)
		if (strcmp(name, fault_names[i]) == 0)
			return (int)i;
	return -EINVAL;
}

static uint64_t now_ns(void)
{
	return mig_clock_ns(CLOCK_MONOTONIC);
}

/* splitmix64: DELAY's jitter, reproducible from the spec's seed. */
static uint64_t rng_next(struct chaos_relay *r)
{
	uint64_t z = (r->rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void set_wake(struct dir *d, uint64_t t)
{
	if (!d->wake || t < d->wake)
		d->wake = t;
}

/* ---- segments ---- */

/*
 * A segment of cap bytes: SEG_SIZE ones are kept for reuse.  A delayed
 * chunk gets a segment of its own size, or a stream of small chunks, each
 * held on its own deadline, would pin a SEG_SIZE segment apiece.
 */
static struct seg *seg_get(struct chaos_relay *r, size_t cap)
{
	struct seg *s = cap == SEG_SIZE ? r->free_segs : NULL;

	if (s) {
		r->free_segs = s->next;
		r->nfree--;
	} else {
		s = malloc(sizeof(*s) + cap);
		if (!s)
			return NULL;
	}
	memset(s, 0, sizeof(*s));
	s->cap = cap;
	return s;
}

static void seg_put(struct chaos_relay *r, struct seg *s)
{
	if (s->cap != SEG_SIZE || r->nfree >= FREE_SEGS_MAX) {
		free(s);
		return;
	}
	s->next = r->free_segs;
	r->free_segs = s;
	r->nfree++;
}

/* ---- the toxic ---- */

static bool fault_is(const struct chaos_relay *r, enum chaos_net_fault f)
{
	return r->spec.fault == f;
}

/* Toxics that act on one whole frame, found at a frame's start. */
static bool frame_scoped(enum chaos_net_fault f)
{
	return f == CHAOS_NET_TRUNCATE || f == CHAOS_NET_DUPLICATE || f == CHAOS_NET_REORDER;
}

static bool armed(const struct chaos_relay *r)
{
	return !r->fired && r->spec.fault != CHAOS_NET_NONE && r->spec.fault != CHAOS_NET_REFUSE;
}

static bool in_scope(const struct chaos_relay *r, const struct dir *d)
{
	return d->to_source == r->spec.to_source &&
	       (r->spec.stream < 0 || d->p->index == r->spec.stream);
}

/* DELAY and BANDWIDTH, once fired, act on every chunk of a matching direction. */
static bool shaped_now(const struct chaos_relay *r, const struct dir *d)
{
	return r->fired && fault_is(r, CHAOS_NET_BANDWIDTH) && in_scope(r, d);
}

static bool delayed_now(const struct chaos_relay *r, const struct dir *d)
{
	return r->fired && fault_is(r, CHAOS_NET_DELAY) && in_scope(r, d);
}

static void block(struct dir *d, uint64_t from, uint64_t until)
{
	d->block_off = from;
	d->block_until = until;
}

static bool partition_holds(const struct chaos_relay *r, const struct pair *p)
{
	return p->index >= 0 && (r->spec.data ? p->index > 0 : p->index == 0);
}

static void partition_block(struct chaos_relay *r, struct pair *p)
{
	block(&p->up, p->up.off, r->part_until);
	block(&p->down, p->down.off, r->part_until);
}

/* REORDER: every other stream's same direction reports its next whole
 * frame that leaves the relay (or one already taken but not yet sent). */
static void reorder_watch(struct chaos_relay *r, struct dir *held)
{
	for (unsigned i = 0; i < r->npairs; i++) {
		struct pair *q = r->pairs[i];
		struct dir *qd = held->to_source ? &q->down : &q->up;

		if (q == held->p)
			continue;
		qd->watching = true;
		qd->watch_end = qd->ps.last_end > qd->wr_off ? qd->ps.last_end : NO_OFF;
	}
}

static void reorder_check(struct chaos_relay *r, struct dir *d)
{
	struct dir *h = r->held;

	if (!h || !d->watching || d->watch_end == NO_OFF || d->wr_off < d->watch_end)
		return;
	if (d->p->index >= 0 && d->p->index == h->p->index)
		return;
	h->block_until = 0;
	r->held = NULL;
	r->again = true;
}

static void note_fired(struct chaos_relay *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void note_fired(struct chaos_relay *r, const char *fmt, ...)
{
	va_list ap;

	r->fired = true;
	pthread_mutex_lock(&r->lock);
	r->rep.fired = true;
	va_start(ap, fmt);
	vsnprintf(r->rep.what, sizeof(r->rep.what), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&r->lock);
}

/* The toxic fires in direction d at stream offset at; total and type
 * describe the frame starting there (total 0: a byte trigger). */
static void fire(struct chaos_relay *r, struct dir *d, uint64_t at, uint64_t total,
		 uint16_t type, uint64_t now)
{
	const struct chaos_net_spec *s = &r->spec;
	struct dir *peer = d == &d->p->up ? &d->p->down : &d->p->up;
	const char *tn = mig_frame_type_to_string(type);
	char where[96];

	if (total)
		snprintf(where, sizeof(where), "frame %llu (%s), byte %llu",
			 (unsigned long long)d->ps.frames, tn ? tn : "unknown type",
			 (unsigned long long)at);
	else
		snprintf(where, sizeof(where), "byte %llu", (unsigned long long)at);
	note_fired(r, "%s stream %d%s at %s", fault_names[s->fault], d->p->index,
		   d->to_source ? " (to source)" : "", where);

	switch (s->fault) {
	case CHAOS_NET_RESET:
		d->cut_at = at;
		break;
	case CHAOS_NET_TRUNCATE:
		d->cut_at = at + total / 2;
		break;
	case CHAOS_NET_CORRUPT:
		d->flip_at = at;
		break;
	case CHAOS_NET_DUPLICATE:
		/* No memory for the copy (or a size no real frame has): the
		 * frame passes once, and the report still says where the
		 * toxic was meant to act. */
		d->dup = total <= DUP_MAX ? malloc(total) : NULL;
		if (d->dup) {
			d->dup_from = at;
			d->dup_end = at + total;
		}
		break;
	case CHAOS_NET_STALL:
		block(d, at, now + s->ms);
		block(peer, peer->off, now + s->ms);
		break;
	case CHAOS_NET_REORDER:
		block(d, at, now + (s->ms ? s->ms : REORDER_MAX_MS));
		r->held = d;
		reorder_watch(r, d);
		break;
	case CHAOS_NET_PARTITION:
		r->part_until = now + s->ms;
		for (unsigned i = 0; i < r->npairs; i++)
			if (partition_holds(r, r->pairs[i]))
				partition_block(r, r->pairs[i]);
		if (partition_holds(r, d->p))
			block(d, at, r->part_until);
		break;
	case CHAOS_NET_DELAY:
		break;
	case CHAOS_NET_BANDWIDTH:
		r->tokens = 0;
		r->bucket_ns = now_ns();
		break;
	default:
		break;
	}
}

/* ---- taking bytes in ---- */

/* Queue bytes for the direction's socket, with the chunk's hold if a
 * DELAY or BANDWIDTH toxic has fired for it. */
static int emit(struct dir *d, const uint8_t *data, size_t n, uint64_t now)
{
	struct chaos_relay *r = d->p->r;
	bool shaped = shaped_now(r, d);
	uint64_t nb = 0;

	if (!n)
		return 0;
	if (delayed_now(r, d)) {
		int64_t ms = r->spec.ms;

		if (r->spec.jitter_ms)
			ms += (int64_t)(rng_next(r) % (2ULL * r->spec.jitter_ms + 1)) -
			      r->spec.jitter_ms;
		nb = now + (ms > 0 ? (uint64_t)ms : 0);
		/* at least 1: 0 means "no hold" */
		nb = nb < d->last_nb ? d->last_nb : nb ? nb : 1;
		d->last_nb = nb;
	}
	while (n) {
		struct seg *s = d->tail;
		size_t k;

		if (!s || s->len == s->cap || s->shaped != shaped || s->not_before != nb) {
			s = seg_get(r, nb && n < SEG_SIZE ? n : SEG_SIZE);
			if (!s)
				return -ENOMEM;
			s->shaped = shaped;
			s->not_before = nb;
			if (d->tail)
				d->tail->next = s;
			else
				d->head = s;
			d->tail = s;
		}
		k = s->cap - s->len < n ? s->cap - s->len : n;
		memcpy(s->data + s->len, data, k);
		s->len += k;
		d->queued += k;
		data += k;
		n -= k;
	}
	return 0;
}

/* The next offset where something happens in d, from d->off on. */
static uint64_t next_mark(const struct chaos_relay *r, const struct dir *d)
{
	uint64_t m = d->cut_at;

	if (d->flip_at < m)
		m = d->flip_at;
	if (d->dup_end < m)
		m = d->dup_end;
	if (armed(r) && !r->spec.frame && !frame_scoped(r->spec.fault) && in_scope(r, d) &&
	    r->spec.byte >= d->off && r->spec.byte < m)
		m = r->spec.byte;
	return m;
}

/* Marks at d->off that need no byte: the byte trigger, a duplicate's end, a cut. */
static int marks_at_off(struct chaos_relay *r, struct dir *d, uint64_t now)
{
	if (armed(r) && !r->spec.frame && !frame_scoped(r->spec.fault) && in_scope(r, d) &&
	    r->spec.byte == d->off)
		fire(r, d, d->off, 0, 0, now);
	if (d->dup_end == d->off) {
		int e = emit(d, d->dup, d->dup_end - d->dup_from, now);

		free(d->dup);
		d->dup = NULL;
		d->dup_end = NO_OFF;
		if (e < 0)
			return e;
	}
	if (d->cut_at == d->off)
		d->cut = true;
	return 0;
}

/* Bytes at d->off.. that belong to a known frame (or to a dead stream):
 * queue them, acting on the marks among them. */
static int pass(struct dir *d, const uint8_t *data, size_t n, uint64_t now)
{
	struct chaos_relay *r = d->p->r;

	for (;;) {
		uint64_t m;
		size_t k;
		int e;

		if (!d->cut) {
			e = marks_at_off(r, d, now);
			if (e < 0)
				return e;
		}
		if (d->cut) {
			d->off += n;     /* after a cut, nothing more leaves */
			return 0;
		}
		if (!n)
			return 0;
		if (d->flip_at == d->off) {
			uint8_t b = data[0] ^ 0xff;

			e = emit(d, &b, 1, now);
			d->flip_at = NO_OFF;
			k = 1;
		} else {
			m = next_mark(r, d);
			k = m - d->off < n ? (size_t)(m - d->off) : n;
			e = emit(d, data, k, now);
		}
		if (e < 0)
			return e;
		if (d->dup && d->off >= d->dup_from && d->off < d->dup_end)
			memcpy(d->dup + (d->off - d->dup_from), data, k);
		d->off += k;
		data += k;
		n -= k;
	}
}

static uint32_t le32_at(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t le16_at(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

/*
 * The pending bytes of a frame's start are all in (ps->need of them): its
 * size is known now, or more bytes are needed (false).  Offsets of struct
 * fields are taken from the structs, so a change of them shows here.
 */
static bool frame_known(struct chaos_relay *r, struct dir *d, uint64_t now)
{
	struct parser *ps = &d->ps;
	const uint8_t *h = ps->pend;
	uint16_t type = le16_at(h + offsetof(struct mig_frame_hdr, type));
	uint32_t len = le32_at(h + offsetof(struct mig_frame_hdr, length));
	/* a sealed frame (protocol.md §1.8): a tag after its payload, and the
	 * sealed bytes after it, with their tag, in its header */
	bool sealed = le32_at(h + offsetof(struct mig_frame_hdr, flags)) & MIG_FRAME_F_SEALED;
	bool pages = !sealed && !d->to_source && type == MIG_FRAME_PAGES &&
		     len >= sizeof(struct mig_pages_hdr);
	bool hello = !d->to_source && ps->frames == 0 && type == MIG_FRAME_STREAM_HELLO &&
		     len == HELLO_LEN;
	uint64_t total = HDR_LEN + (uint64_t)len;

	if (le32_at(h) != MIG_WIRE_MAGIC) {
		ps->dead = true;
		return true;
	}
	if (sealed) {
		uint64_t after = le32_at(h + offsetof(struct mig_frame_hdr, checksum)) |
				 (uint64_t)le32_at(h + offsetof(struct mig_frame_hdr, checksum) + 4)
				 << 32;

		/* more than a frame's data can hold: not a frame */
		if (after > MIG_FRAME_MAX) {
			ps->dead = true;
			return true;
		}
		total += XPORT_AEAD_TAG + (after ? after + XPORT_AEAD_TAG : 0);
	}
	if (ps->need == HDR_LEN && (pages || hello)) {
		ps->need = HDR_LEN + (pages ? sizeof(struct mig_pages_hdr) : HELLO_LEN);
		return false;
	}
	if (pages)
		total += le32_at(h + HDR_LEN + offsetof(struct mig_pages_hdr, data_len));
	if (hello) {
		d->p->index = (int)le32_at(h + HDR_LEN + offsetof(struct mig_stream_hello, index));
		/* a stream that joins while its class is partitioned */
		if (now < r->part_until && partition_holds(r, d->p))
			partition_block(r, d->p);
	}
	ps->known = true;
	ps->frame_end = d->off + total;
	ps->frames++;
	if (armed(r) && in_scope(r, d) && (!r->spec.frame_type || r->spec.frame_type == type)) {
		r->matched++;
		if (r->spec.frame ? r->matched == r->spec.frame
				  : frame_scoped(r->spec.fault) && d->off >= r->spec.byte)
			fire(r, d, d->off, total, type, now);
	}
	return true;
}

static void frame_done(struct dir *d)
{
	struct parser *ps = &d->ps;

	ps->known = false;
	ps->pend_len = 0;
	ps->need = HDR_LEN;
	ps->last_end = ps->frame_end;
	if (d->watching && d->watch_end == NO_OFF)
		d->watch_end = ps->frame_end;
}

/* Bytes just read from d->from. */
static int take(struct dir *d, const uint8_t *data, size_t n, uint64_t now)
{
	struct chaos_relay *r = d->p->r;
	struct parser *ps = &d->ps;
	int e;

	while (n) {
		size_t k;

		if (ps->dead)
			return pass(d, data, n, now);
		if (ps->known) {
			k = ps->frame_end - d->off < n ? (size_t)(ps->frame_end - d->off) : n;
			e = pass(d, data, k, now);
			if (e < 0)
				return e;
			data += k;
			n -= k;
			if (d->off == ps->frame_end)
				frame_done(d);
			continue;
		}
		k = ps->need - ps->pend_len < n ? ps->need - ps->pend_len : n;
		memcpy(ps->pend + ps->pend_len, data, k);
		ps->pend_len += k;
		data += k;
		n -= k;
		if (ps->pend_len < ps->need || !frame_known(r, d, now))
			continue;
		/* The frame's first bytes, held until now.  A frame of
		 * exactly its header (or less, on a dead stream) ends here. */
		k = ps->pend_len;
		ps->pend_len = 0;
		e = pass(d, ps->pend, k, now);
		if (e < 0)
			return e;
		if (!ps->dead && d->off == ps->frame_end)
			frame_done(d);
		/* a final pass(..., 0): a duplicate ending exactly here goes out now */
		e = pass(d, NULL, 0, now);
		if (e < 0)
			return e;
	}
	return pass(d, NULL, 0, now);
}

/* ---- sockets ---- */

static void sock_reset(int fd)
{
	struct linger l = { .l_onoff = 1, .l_linger = 0 };

	if (fd < 0)
		return;
	(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(fd);
}

static void dir_free(struct chaos_relay *r, struct dir *d)
{
	while (d->head) {
		struct seg *s = d->head;

		d->head = s->next;
		seg_put(r, s);
	}
	d->tail = NULL;
	free(d->dup);
	d->dup = NULL;
}

static void pair_close(struct pair *p, bool reset)
{
	struct chaos_relay *r = p->r;

	if (p->dead)
		return;
	p->dead = true;
	if (reset) {
		sock_reset(p->src);
		sock_reset(p->dst);
	} else {
		close(p->src);
		if (p->dst >= 0)
			close(p->dst);
	}
	p->src = p->dst = -1;
	if (r->held && r->held->p == p)
		r->held = NULL;
	dir_free(r, &p->up);
	dir_free(r, &p->down);
}

static void dir_init(struct pair *p, struct dir *d, bool to_source)
{
	d->p = p;
	d->to_source = to_source;
	d->from = to_source ? p->dst : p->src;
	d->to = to_source ? p->src : p->dst;
	d->ps.need = HDR_LEN;
	d->cut_at = d->flip_at = d->dup_end = NO_OFF;
	d->block_off = NO_OFF;
	d->watching = p->r->held != NULL;
	d->watch_end = NO_OFF;
}

/* One read from d->from: >0 bytes, 0 nothing now, <0 the pair fails. */
static int dir_read(struct dir *d, uint64_t now)
{
	struct chaos_relay *r = d->p->r;
	ssize_t n = recv(d->from, r->scratch, SEG_SIZE, 0);

	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	if (n == 0) {
		/* A frame cut short by the peer goes on as plain bytes. */
		struct parser *ps = &d->ps;
		size_t k = ps->known ? 0 : ps->pend_len;
		int e;

		d->eof = true;
		ps->dead = true;
		e = pass(d, ps->pend, k, now);
		ps->pend_len = 0;
		return e < 0 ? e : 0;
	}
	return take(d, r->scratch, (size_t)n, now) < 0 ? -ENOMEM : (int)n;
}

static bool dir_can_read(const struct dir *d)
{
	return !d->p->connecting && !d->eof && !d->cut && d->queued < DIR_BOUND;
}

/*
 * Take from the token bucket up to want bytes; 0 with *wake set when it is
 * empty.  Its depth is 50 ms of the rate (at least 16 KiB), so the rate
 * holds over any stretch longer than that.
 */
static size_t bucket_take(struct chaos_relay *r, size_t want, uint64_t now, uint64_t *wake)
{
	double rate = r->spec.rate ? (double)r->spec.rate : 1.0;
	double depth = rate / 20 > 16384 ? rate / 20 : 16384;
	uint64_t t = now_ns();
	double need;

	r->tokens += (double)(t - r->bucket_ns) * rate / 1e9;
	r->bucket_ns = t;
	if (r->tokens > depth)
		r->tokens = depth;
	if (r->tokens >= 1)
		return r->tokens < (double)want ? (size_t)r->tokens : want;
	need = (double)(want < 4096 ? want : 4096) - r->tokens;
	*wake = now + 1 + (uint64_t)(need * 1000 / rate);
	return 0;
}

/* Write what d may send now.  1: the pair is to be reset, <0 it failed. */
static int dir_flush(struct dir *d, uint64_t now)
{
	struct chaos_relay *r = d->p->r;
	_Atomic uint64_t *count = d->to_source ? &r->bytes_down : &r->bytes_up;

	d->want_out = false;
	d->wake = 0;
	while (d->head) {
		struct seg *s = d->head;
		size_t len = s->len - s->off;
		uint64_t wake = 0;
		ssize_t w;

		if (s->not_before > now) {
			set_wake(d, s->not_before);
			break;
		}
		if (d->block_until > now && d->block_off != NO_OFF) {
			if (d->wr_off >= d->block_off) {
				set_wake(d, d->block_until);
				break;
			}
			if (d->block_off - d->wr_off < len)
				len = d->block_off - d->wr_off;
		}
		if (s->shaped) {
			len = bucket_take(r, len, now, &wake);
			if (!len) {
				set_wake(d, wake);
				break;
			}
		}
		w = send(d->to, s->data + s->off, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EINTR)
			continue;
		if (s->shaped)
			r->tokens -= w > 0 ? (double)w : 0;
		if (w < 0) {
			if (errno != EAGAIN)
				return -errno;
			d->want_out = true;
			break;
		}
		s->off += (size_t)w;
		d->wr_off += (uint64_t)w;
		d->queued -= (size_t)w;
		atomic_fetch_add_explicit(count, (uint64_t)w, memory_order_relaxed);
		if (s->off == s->len) {
			d->head = s->next;
			if (!d->head)
				d->tail = NULL;
			seg_put(r, s);
		}
		reorder_check(r, d);
	}
	if (d->head)
		return 0;
	if (d->cut) {
		int outq = 0;

		if (!d->drain_since)
			d->drain_since = now;
		if (ioctl(d->to, SIOCOUTQ, &outq) == 0 && outq > 0 &&
		    now - d->drain_since < RESET_DRAIN_MS) {
			set_wake(d, now + 1);
			return 0;
		}
		return 1;
	}
	if (d->eof && !d->shut) {
		/* half-close: the peer sees our side's EOF after every byte */
		(void)shutdown(d->to, SHUT_WR);
		d->shut = true;
	}
	return 0;
}

/* ---- connections ---- */

static void pair_add(struct chaos_relay *r, int fd)
{
	struct pair *p;
	int dst, one = 1;

	r->nconns++;
	pthread_mutex_lock(&r->lock);
	r->rep.conns = r->nconns;
	pthread_mutex_unlock(&r->lock);
	if (fault_is(r, CHAOS_NET_REFUSE) && r->nconns >= (r->spec.conn ? r->spec.conn : 1)) {
		if (!r->fired)
			note_fired(r, "refuse connection %u and every later one", r->nconns);
		sock_reset(fd);
		return;
	}
	p = r->npairs < PAIRS_MAX ? calloc(1, sizeof(*p)) : NULL;
	dst = p ? socket(r->dest.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) : -1;
	if (dst < 0) {
		free(p);
		sock_reset(fd);
		return;
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	xport_tune_socket(dst);
	if (connect(dst, (struct sockaddr *)&r->dest, r->dest_len) < 0 && errno != EINPROGRESS) {
		close(dst);
		free(p);
		sock_reset(fd);
		return;
	}
	p->r = r;
	p->src = fd;
	p->dst = dst;
	p->connecting = true;
	p->index = -1;
	dir_init(p, &p->up, false);
	dir_init(p, &p->down, true);
	r->pairs[r->npairs++] = p;
}

static void accept_all(struct chaos_relay *r)
{
	for (;;) {
		int fd = accept4(r->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;     /* EAGAIN, or a connection gone before we took it */
		pair_add(r, fd);
	}
}

static void connect_done(struct pair *p)
{
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	if (getsockopt(p->dst, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		soerr = errno;
	if (soerr) {
		pair_close(p, true);
		return;
	}
	p->connecting = false;
}

/* Events on one pair: reads, then writes of whatever may go. */
static void pair_step(struct pair *p, short src_ev, short dst_ev, uint64_t now)
{
	struct dir *dirs[2] = { &p->up, &p->down };
	short in_ev[2] = { src_ev, dst_ev }, out_ev[2] = { dst_ev, src_ev };

	if (p->connecting) {
		if (!(dst_ev & (POLLOUT | POLLERR | POLLHUP)))
			return;
		connect_done(p);
		if (p->dead)
			return;
	}
	for (int i = 0; i < 2; i++) {
		struct dir *d = dirs[i];

		for (int k = 0; k < READS_PER_WAKE && (in_ev[i] & (POLLIN | POLLHUP | POLLERR)) &&
				dir_can_read(d); k++) {
			int n = dir_read(d, now);

			if (n < 0) {
				pair_close(p, true);
				return;
			}
			if (n == 0)
				break;
			if (dir_flush(d, now) < 0) {
				pair_close(p, true);
				return;
			}
		}
	}
	for (int i = 0; i < 2; i++) {
		struct dir *d = dirs[i];
		int e;

		if (d->want_out && !(out_ev[i] & (POLLOUT | POLLERR | POLLHUP)) && !p->r->again)
			continue;
		e = dir_flush(d, now);
		if (e != 0) {
			pair_close(p, true);
			return;
		}
	}
	if (p->up.eof && p->down.eof && p->up.shut && p->down.shut)
		pair_close(p, false);
}

static void pairs_sweep(struct chaos_relay *r)
{
	unsigned j = 0;

	for (unsigned i = 0; i < r->npairs; i++) {
		if (r->pairs[i]->dead)
			free(r->pairs[i]);
		else
			r->pairs[j++] = r->pairs[i];
	}
	r->npairs = j;
}

static short dir_events(const struct dir *in, const struct dir *out)
{
	return (dir_can_read(in) ? POLLIN : 0) | (out->want_out ? POLLOUT : 0);
}

static void *relay_thread(void *arg)
{
	struct chaos_relay *r = arg;
	struct pollfd pfd[2 + 2 * PAIRS_MAX];

	while (!atomic_load(&r->stop)) {
		uint64_t now = mig_now_ms(), wake = 0;
		unsigned n = 2, np = r->npairs;
		int timeout = -1;

		pfd[0] = (struct pollfd){ .fd = r->efd, .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = r->lfd, .events = POLLIN };
		for (unsigned i = 0; i < np; i++) {
			struct pair *p = r->pairs[i];
			short se = dir_events(&p->up, &p->down);
			short de = p->connecting ? POLLOUT : dir_events(&p->down, &p->up);

			/* no events: leave it out, or a hang-up we do not read
			 * yet (queue full) would wake poll at once, forever */
			pfd[n++] = (struct pollfd){ .fd = se ? p->src : -1, .events = se };
			pfd[n++] = (struct pollfd){ .fd = de ? p->dst : -1, .events = de };
			if (p->up.wake && (!wake || p->up.wake < wake))
				wake = p->up.wake;
			if (p->down.wake && (!wake || p->down.wake < wake))
				wake = p->down.wake;
		}
		if (r->again)
			timeout = 0;
		else if (wake)
			timeout = wake > now ? (int)(wake - now) : 0;
		r->again = false;
		if (poll(pfd, n, timeout) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents & POLLIN)
			accept_all(r);
		now = mig_now_ms();
		for (unsigned i = 0; i < np; i++)
			pair_step(r->pairs[i], pfd[2 + 2 * i].revents, pfd[3 + 2 * i].revents, now);
		pairs_sweep(r);
	}
	return NULL;
}

static int dest_resolve(struct chaos_relay *r, const char *dest, struct mig_error *err)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV };
	struct xport_endpoint ep;
	struct addrinfo *ai = NULL;
	char port[8];
	int gai, e;

	e = xport_endpoint_parse(dest, &ep, err);
	if (e < 0)
		return e;
	if (ep.kind != XPORT_EP_TCP)
		return mig_error_set(err, -EINVAL, "relay destination %s: expected HOST:PORT",
				     dest);
	snprintf(port, sizeof(port), "%u", ep.port);
	gai = getaddrinfo(ep.host, port, &hints, &ai);
	if (gai)
		return mig_error_set(err, -EHOSTUNREACH, "relay destination %s: %s", dest,
				     gai_strerror(gai));
	memcpy(&r->dest, ai->ai_addr, ai->ai_addrlen);
	r->dest_len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

static void relay_free(struct chaos_relay *r)
{
	for (unsigned i = 0; i < r->npairs; i++) {
		pair_close(r->pairs[i], false);
		free(r->pairs[i]);
	}
	while (r->free_segs) {
		struct seg *s = r->free_segs;

		r->free_segs = s->next;
		free(s);
	}
	if (r->lfd >= 0)
		close(r->lfd);
	if (r->efd >= 0)
		close(r->efd);
	free(r->scratch);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

int chaos_relay_start(const char *host, const char *dest, const struct chaos_net_spec *spec,
		      struct chaos_relay **ret, char *addr, size_t n, struct mig_error *err)
{
	struct xport_endpoint lep = { .kind = XPORT_EP_TCP, .port = 0 };
	struct chaos_relay *r;
	int e;

	if (spec && (unsigned)spec->fault >= _CHAOS_NET_END)
		return mig_error_set(err, -EINVAL, "unknown network fault %d", spec->fault);
	if (spec && spec->fault == CHAOS_NET_BANDWIDTH && !spec->rate)
		return mig_error_set(err, -EINVAL, "a bandwidth fault needs a rate above 0");
	r = calloc(1, sizeof(*r));
	if (!r)
		return mig_error_set(err, -ENOMEM, "out of memory for the relay");
	r->lfd = r->efd = -1;
	pthread_mutex_init(&r->lock, NULL);
	if (spec)
		r->spec = *spec;
	else
		r->spec.stream = -1;
	r->rng = r->spec.seed;
	e = dest_resolve(r, dest, err);
	if (e < 0)
		goto err_free;
	str_copy(lep.host, sizeof(lep.host), host ? host : "127.0.0.1");
	e = xport_listen(&lep, err);
	if (e < 0)
		goto err_free;
	r->lfd = e;
	if (fcntl(r->lfd, F_SETFL, fcntl(r->lfd, F_GETFL) | O_NONBLOCK) < 0) {
		e = mig_error_set(err, -errno, "relay listener on %s: %s", lep.host,
				  strerror(errno));
		goto err_free;
	}
	e = xport_local_addr(r->lfd, addr, n);
	if (e < 0) {
		mig_error_set(err, e, "relay listener's address: %s", strerror(-e));
		goto err_free;
	}
	r->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	r->scratch = malloc(SEG_SIZE);
	if (r->efd < 0 || !r->scratch) {
		e = mig_error_set(err, r->efd < 0 ? -errno : -ENOMEM, "relay: %s",
				  strerror(r->efd < 0 ? errno : ENOMEM));
		goto err_free;
	}
	e = -pthread_create(&r->thread, NULL, relay_thread, r);
	if (e < 0) {
		mig_error_set(err, e, "relay thread: %s", strerror(-e));
		goto err_free;
	}
	*ret = r;
	return 0;

err_free:
	relay_free(r);
	return e;
}

void chaos_relay_report(struct chaos_relay *r, struct chaos_relay_report *rep)
{
	clockid_t clk;

	pthread_mutex_lock(&r->lock);
	*rep = r->rep;
	pthread_mutex_unlock(&r->lock);
	rep->bytes_up = atomic_load_explicit(&r->bytes_up, memory_order_relaxed);
	rep->bytes_down = atomic_load_explicit(&r->bytes_down, memory_order_relaxed);
	rep->cpu_ms = 0;
	if (pthread_getcpuclockid(r->thread, &clk) == 0)
		rep->cpu_ms = mig_clock_ns(clk) / 1000000;
}

void chaos_relay_stop(struct chaos_relay *r)
{
	uint64_t one = 1;

	if (!r)
		return;
	atomic_store(&r->stop, true);
	if (write(r->efd, &one, sizeof(one)) < 0) {
		/* the counter is far from full: cannot happen; the thread
		 * still sees stop at its next wake */
	}
	pthread_join(r->thread, NULL);
	relay_free(r);
}
