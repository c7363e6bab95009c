/* SPDX-License-Identifier: MIT */
/*
 * The tunnel (docs/protocol.md §11): carries connections made to unix
 * sockets on one host to unix sockets on another, each over its own
 * authenticated migration stream, so that a program that migrates over
 * unix sockets (libvirt and QEMU: docs/libvirt.md) crosses hosts through
 * the agents.
 *
 * The source side listens on one unix socket per channel kind.  Each
 * connection it accepts gets the next ordinal (1, 2, ... across all kinds)
 * and a stream to the destination, whose STREAM_HELLO carries the ordinal
 * as its index and the kind as its stream count.  The destination connects
 * to its own socket of that kind strictly in ordinal order, whatever order
 * the streams arrive in: QEMU takes the first connection on its listener
 * as its main channel.  Stream 0 is the tunnel's control stream: while it
 * is open the tunnel lives.
 *
 * Each stream moves bytes both ways in TUNNEL_DATA frames (checked like
 * every frame) from a thread with its own io_uring; the end of one
 * direction is a TUNNEL_END frame, passed on as a shutdown(SHUT_WR).  A
 * stream that breaks, or a damaged frame, resets both of its connections.
 * A channel the source seals (its STREAM_HELLO says so, as a migration
 * stream's does) carries every frame after its hello sealed (aead.h),
 * with keys from the secret, its hello's nonce and its ordinal.
 */
#ifndef MIGRATE_TUNNEL_H
#define MIGRATE_TUNNEL_H

#include <stdbool.h>
#include <stdint.h>

#include <migrate/device.h>
#include <migrate/error.h>

enum mig_tunnel_kind {
	MIG_TUNNEL_CONTROL = 0,
	MIG_TUNNEL_LIBVIRT = 1,   /* libvirtd's RPC connection */
	MIG_TUNNEL_QEMU = 2,      /* QEMU's migration stream and its multifd channels */
	MIG_TUNNEL_NBD = 3,       /* the disks' NBD copy */
	_MIG_TUNNEL_KINDS,
};
const char *mig_tunnel_kind_name(unsigned kind);

/* Connections one tunnel carries in all, its control stream excluded. */
#define MIG_TUNNEL_MAX_CHANNELS 64

struct mig_tunnel;

/* Source: listen on paths[kind] (NULL or "": none) and open the control
 * stream to dest_addr (HOST:PORT).  The socket files are made mode 0666,
 * so that a QEMU running as another user may connect: the directory they
 * are in is what guards them. */
struct mig_tunnel_src {
	const uint8_t *id;        /* 16 bytes */
	const uint8_t *secret;    /* MIG_SECRET_LEN bytes */
	const char *dest_addr;
	const char *paths[_MIG_TUNNEL_KINDS];
	uint32_t encrypt;         /* enum mig_encrypt (stream.h): which channels it seals */
	/* chaos mode (NULL in production): called at every TUNNEL_DATA and
	 * TUNNEL_END frame a channel sends or receives, as a FRAME_SEND or
	 * FRAME_RECV point whose stream is the channel's ordinal; an error
	 * it returns breaks that channel */
	mig_fault_fn fault;
	void *fault_arg;
};
int mig_tunnel_src_start(const struct mig_tunnel_src *o, struct mig_tunnel **ret,
			 struct mig_error *err);

/* Destination: accept the source's streams on listen_fd (taken over) and
 * connect each to targets[kind].  A stream that cannot prove it belongs
 * to this migration is answered ERROR and dropped; one whose target
 * refuses is answered with that error. */
struct mig_tunnel_dst {
	const uint8_t *id;
	const uint8_t *secret;
	int listen_fd;
	const char *targets[_MIG_TUNNEL_KINDS];
	/* test seam: wait this long before connecting the channel of this
	 * ordinal (0: none), to prove the ordering holds */
	unsigned delay_ordinal, delay_ms;
	uint32_t encrypt;         /* enum mig_encrypt: which channels must come sealed */
	mig_fault_fn fault;       /* as the source's */
	void *fault_arg;
};
int mig_tunnel_dst_start(const struct mig_tunnel_dst *o, struct mig_tunnel **ret,
			 struct mig_error *err);

struct mig_tunnel_stats {
	unsigned channels[_MIG_TUNNEL_KINDS];   /* connections carried, by kind */
	unsigned open;            /* channels still open */
	unsigned refused;         /* streams or connections refused */
	uint64_t bytes_out;       /* source: sent to the destination; destination: received */
	uint64_t bytes_in;        /* the other way */
	bool control_up;          /* the control stream is open */
	unsigned sealed;          /* channels sealed (protocol.md §1.8) */
	char error[256];          /* the first channel failure ("" none) */
};
void mig_tunnel_stats(struct mig_tunnel *t, struct mig_tunnel_stats *st);
/* The destination's connect order so far, as ordinals (test seam). */
unsigned mig_tunnel_order(struct mig_tunnel *t, unsigned *ordinals, unsigned max);
/* Destination: waits up to timeout_ms for the control stream to end (the
 * source is done with the tunnel, or gone); true when it has. */
bool mig_tunnel_wait_closed(struct mig_tunnel *t, int timeout_ms);
/* Resets every connection, stops the threads, removes the socket files. */
void mig_tunnel_stop(struct mig_tunnel *t);

#endif
