/* SPDX-License-Identifier: MIT */
/*
 * The chaos runner's network-fault relay (chaos/relay.c, docs/chaos-relay.md).
 * A TCP relay between the source agent and the destination's migration
 * listener: every connection made to it is forwarded to the destination,
 * byte for byte, and one "toxic" acts at a trigger.  The product is not
 * changed and not trusted: the relay parses frames (docs/protocol.md §1,
 * §6) only to count them and find their boundaries; a stream that does not
 * parse is forwarded as bytes from then on.
 *
 * A trigger names a direction, a stream (by the index its STREAM_HELLO
 * gives; -1 any) and either the nth frame (of a type, or of any type) or a
 * byte offset of the stream.  Frames are counted over every connection the
 * trigger matches.  The toxic fires once per relay.
 */
#ifndef MIGRATE_RELAY_H
#define MIGRATE_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <migrate/error.h>

enum chaos_net_fault {
	CHAOS_NET_NONE = 0,
	/* at the trigger: both connections reset (RST), once the bytes before
	 * it reached the destination's socket */
	CHAOS_NET_RESET,
	/* at the trigger: nothing forwarded either way on that connection for
	 * ms, then on */
	CHAOS_NET_STALL,
	/* from the trigger: every chunk of a matching direction held
	 * ms +- jitter_ms (in order: a chunk never overtakes another) */
	CHAOS_NET_DELAY,
	/* from the trigger: the matching directions share one token bucket of
	 * rate bytes/s */
	CHAOS_NET_BANDWIDTH,
	/* the byte at the trigger flipped (xor 0xff) */
	CHAOS_NET_CORRUPT,
	/* the frame at the trigger cut after half its bytes (header, payload
	 * and PAGES data), then both connections reset */
	CHAOS_NET_TRUNCATE,
	/* the frame at the trigger (header, payload, PAGES data) sent twice */
	CHAOS_NET_DUPLICATE,
	/* the frame at the trigger (and what follows it on its stream) held
	 * back until a whole frame of another stream passed the relay in the
	 * same direction (at most ms; 0: 10 s), then sent */
	CHAOS_NET_REORDER,
	/* from the trigger: the control stream, or (data) every data stream,
	 * forwards nothing either way for ms while the others flow */
	CHAOS_NET_PARTITION,
	/* from the conn-th connection on: each is accepted and reset at once */
	CHAOS_NET_REFUSE,
	_CHAOS_NET_END,
};

struct chaos_net_spec {
	enum chaos_net_fault fault;
	/* the trigger */
	int stream;            /* -1: any stream; 0 control; k data stream k */
	bool to_source;        /* direction; false: source -> destination */
	uint16_t frame_type;   /* 0: any type */
	uint64_t frame;        /* fire at the nth matching frame (1-based), or */
	uint64_t byte;         /* when frame is 0: at this byte offset of the stream;
				* TRUNCATE, DUPLICATE and REORDER act on the first
				* matching frame that starts there or later */
	uint32_t conn;         /* REFUSE: the nth connection (1-based; 0 as 1) */
	/* its parameters */
	uint32_t ms, jitter_ms;
	uint64_t rate;         /* BANDWIDTH, bytes/s */
	bool data;             /* PARTITION: the data streams instead of control */
	uint64_t seed;         /* DELAY's jitter */
};

struct chaos_relay;

/* Listen on host (NULL: 127.0.0.1), port chosen by the kernel ("HOST:PORT"
 * for the source into addr), and forward each accepted connection to dest
 * ("HOST:PORT"), with spec (NULL: none; copied).  One thread moves every
 * connection.  A spec's stream is an index: set -1 for "any". */
int chaos_relay_start(const char *host, const char *dest, const struct chaos_net_spec *spec,
		      struct chaos_relay **ret, char *addr, size_t n, struct mig_error *err);

/* What happened so far: whether the toxic fired and where ("reset stream 2
 * at frame 14 (PAGES), byte 1048620"), connections accepted, bytes written
 * towards the destination (up) and towards the source (down), and the CPU
 * time of the relay's thread (bytes per CPU second say whether the relay
 * could limit a migration, whatever else loads the host). */
struct chaos_relay_report {
	bool fired;
	char what[160];
	unsigned conns;
	uint64_t bytes_up, bytes_down;
	uint64_t cpu_ms;
};
void chaos_relay_report(struct chaos_relay *r, struct chaos_relay_report *rep);

/* Stop forwarding, close every socket, join the thread, free.  NULL is a no-op. */
void chaos_relay_stop(struct chaos_relay *r);

/* "reset", "stall", ...; NULL outside the enum. */
const char *chaos_net_fault_name(enum chaos_net_fault f);
/* The fault of that name, or -EINVAL. */
int chaos_net_fault_parse(const char *name);

#endif
