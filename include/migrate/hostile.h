/* SPDX-License-Identifier: MIT */
/*
 * Hostile clients for the chaos runner: connections that misbehave
 * against an agent's control port or a destination's migration listener,
 * while the runner checks that the peer drops them within its bounds and
 * keeps serving everyone else (docs/chaos-hostile.md).
 */
#ifndef MIGRATE_HOSTILE_H
#define MIGRATE_HOSTILE_H

#include <stdbool.h>
#include <stdint.h>

#include <migrate/error.h>

enum chaos_hostile_kind {
	/* `count` connections at once that send nothing, each held until
	 * the peer drops it or hold_ms pass */
	CHAOS_HOSTILE_SILENT = 1,
	/* the same, each after the first half (16 bytes) of a valid frame
	 * header: HELLO on even connections, STREAM_HELLO on odd ones */
	CHAOS_HOSTILE_HALF_FRAME,
	/* up to `count` connections one after another, as fast as they go,
	 * for the first half of hold_ms: each closed at once, but every
	 * CHAOS_FLOOD_HOLD_EVERY-th held (at most CHAOS_FLOOD_HELD_MAX at a
	 * time) until hold_ms from the start */
	CHAOS_HOSTILE_FLOOD,
	/* `count` idle connections kept open for hold_ms: one the peer
	 * drops is opened again at once, one it refuses after 100 ms */
	CHAOS_HOSTILE_IDLE,
	/* as SILENT, each after 32 to 2048 random bytes (from seed) */
	CHAOS_HOSTILE_GARBAGE,
};
#define CHAOS_HOSTILE_KINDS 5
#define CHAOS_FLOOD_HOLD_EVERY 8
#define CHAOS_FLOOD_HELD_MAX 64
/* A connect that takes longer counts as refused (a full accept queue). */
#define CHAOS_HOSTILE_CONNECT_MS 2000

/*
 * How a campaign went.  Each connection that got through connect() ends in
 * one of: refused (the peer's first frame is an ERROR saying busy or
 * denied: it was turned away on accept), closed_by_peer (EOF), reset_by_peer,
 * or held to the end (we closed it).  A FLOOD connection closed at once
 * ends in none of them.  The close times count only connections the peer
 * admitted and then dropped.
 */
struct chaos_hostile_report {
	unsigned attempted;      /* connect() calls */
	unsigned connected;
	unsigned refused;        /* at connect (refused, queue full, timeout) or on accept */
	unsigned reset_by_peer, closed_by_peer;
	unsigned held_to_end;    /* still open when the campaign ended */
	uint64_t first_close_ms; /* how long the peer held the first one it dropped; 0: none */
	uint64_t max_close_ms;   /* ... and the longest it held one */
	uint64_t max_connect_ms; /* the slowest connect(): the peer's accept queue was full */
	uint64_t elapsed_ms;     /* the campaign's own length */
	int error;               /* -errno of a failure on our side (out of fds ...), 0 */
};

/*
 * Runs one campaign against endpoint ("tcp://HOST:PORT", "HOST:PORT" or
 * "unix:///PATH") and returns once every connection has ended or hold_ms
 * have passed (FLOOD and IDLE: hold_ms), plus at most one connect time.
 * The report says how it went; the return value is < 0 only when the
 * campaign could not run (bad endpoint, kind or count) or failed on our
 * side (rep->error).
 */
int chaos_hostile_run(enum chaos_hostile_kind k, const char *endpoint, unsigned count,
		      unsigned hold_ms, uint64_t seed, struct chaos_hostile_report *rep,
		      struct mig_error *err);

/* The same in a thread of its own, beside a migration: start returns at
 * once; done says whether it ended by itself; stop ends it (closing what it
 * holds, counted as held to the end), joins it and frees h. */
struct chaos_hostile;
int chaos_hostile_start(enum chaos_hostile_kind k, const char *endpoint, unsigned count,
			unsigned hold_ms, uint64_t seed, struct chaos_hostile **ret,
			struct mig_error *err);
bool chaos_hostile_done(const struct chaos_hostile *h);
void chaos_hostile_stop(struct chaos_hostile *h, struct chaos_hostile_report *rep);

/* "silent", "half-frame", "flood", "idle", "garbage"; NULL for others. */
const char *chaos_hostile_name(enum chaos_hostile_kind k);
/* The kind named, or -EINVAL. */
int chaos_hostile_parse(const char *name);

#endif
