/* SPDX-License-Identifier: MIT */
/*
 * Transport: endpoints, io_uring-driven framed connections, authentication
 * and page codecs.  Every socket operation of a migration goes through an
 * xport_ring (liburing); nothing in the data path blocks in send/recv.
 */
#ifndef MIGRATE_TRANSPORT_H
#define MIGRATE_TRANSPORT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <migrate/buf.h>
#include <migrate/error.h>
#include <migrate/wire.h>

/* ---- endpoints ---- */

enum xport_ep_kind { XPORT_EP_LOCAL, XPORT_EP_TCP, XPORT_EP_UNIX, XPORT_EP_SSH };

struct xport_endpoint {
	enum xport_ep_kind kind;
	char host[256];    /* tcp/ssh: host name or address ("[::1]" given without brackets) */
	uint16_t port;     /* tcp/ssh */
	char path[108];    /* unix; ssh: the agent's socket on the remote host */
	char user[64];     /* ssh ("": the local user's name) */
};

/* Where an ssh:// endpoint without a /PATH finds the remote agent: the
 * socket of the agent a host runs as a service. */
#define XPORT_SSH_AGENT_SOCK "/run/migratectl/agent.sock"

/* "local", "tcp://HOST:PORT", "HOST:PORT", "unix:///PATH",
 * "ssh://[USER@]HOST[:PORT][/PATH]". */
int xport_endpoint_parse(const char *s, struct xport_endpoint *ret, struct mig_error *err);
/* Back to text, for messages. */
void xport_endpoint_format(const struct xport_endpoint *ep, char *buf, size_t n);

/* Blocking setup helpers (control plane only): return an fd or -errno.
 * A unix socket file is created with mode 0600, whatever the umask, and
 * owned by the caller's effective uid. */
int xport_listen(const struct xport_endpoint *ep, struct mig_error *err);
/* The same, but a unix socket file gets mode 0660 and group `group`, so
 * that the group's members may connect.  For unix endpoints only. */
int xport_listen_group(const struct xport_endpoint *ep, gid_t group, struct mig_error *err);
/* A listening socket passed by a service manager (fd), checked against ep:
 * a listening stream socket of ep's kind and address.  Returns fd (now
 * tuned and close-on-exec) or -EINVAL with the mismatch and its fix. */
int xport_listen_inherited(const struct xport_endpoint *ep, int fd, struct mig_error *err);
/* The socket comes back tuned (xport_tune_socket) before its SYN went out. */
int xport_connect(const struct xport_endpoint *ep, int timeout_ms, struct mig_error *err);
/* The local address of a listening TCP socket as "HOST:PORT". */
int xport_local_addr(int fd, char *buf, size_t n);
/* Close-on-exec; TCP_NODELAY and keepalive on TCP, 4 MiB buffers on other sockets.  TCP
 * buffers stay autotuned: with a thread per data stream, fixed 4 MiB
 * buffers on 2 or 4 loopback streams hold more data in flight than the
 * caches do, and each byte is copied out cold (docs/performance.md);
 * between hosts, autotuning also grows past 4 MiB for a long path. */
void xport_tune_socket(int fd);
/* A TCP connection that may sit idle while its peer works (a client
 * waiting for a migration's EVENTs): keepalive probes after idle_s seconds
 * of silence, every intvl_s, and the connection is reset after cnt
 * unanswered; so a peer whose side is gone (its host cut off, its socket
 * aborted) is found within idle_s + intvl_s * cnt.  Not TCP: nothing. */
void xport_keepalive(int fd, int idle_s, int intvl_s, int cnt);
/* What xport_tune_socket() sets on every TCP socket: a dead peer within 11 s. */
#define XPORT_KEEPALIVE_IDLE_S 5
#define XPORT_KEEPALIVE_INTVL_S 2
#define XPORT_KEEPALIVE_CNT 3
/* Fixed 4 MiB TCP buffers for a migration with one data stream, where they
 * measured faster than autotuning.  Call before the page data flows; the
 * window scale, sized from the sysctl maxima at SYN, already covers it. */
void xport_lone_stream(int fd);
/* Whether a connection stays inside this host: a unix socket, a loopback
 * peer, or a peer at our own address.  The second form takes the two
 * addresses (from getsockname/getpeername); an unknown family is "no". */
bool xport_same_host(int fd);
bool xport_addrs_same_host(const struct sockaddr_storage *local,
			   const struct sockaddr_storage *peer);

/* ---- io_uring engine ---- */

struct io_uring;

struct xport_ring {
	struct io_uring *ring;
	unsigned inflight;
};

/* One asynchronous transfer of exactly `total` bytes (the sum of the iov
 * lengths) on fd; short sends/receives are resubmitted by the engine. */
#define XPORT_OP_IOV 260      /* a PAGES frame: header, meta, up to 256 page runs */
struct xport_op {
	int fd;
	bool is_send;
	struct iovec iov[XPORT_OP_IOV];
	int iovcnt;
	size_t total;
	size_t done;
	int res;          /* 0 when all bytes moved, -errno on failure, -ECONNRESET on EOF */
	void *user;
	/* A receive with `whole` wakes its thread once all its bytes are in,
	 * not as each segment lands: each wakeup of a sleeping receiver costs
	 * the sender's CPU an IPI.  The engine sets SO_RCVLOWAT on the fd to
	 * the bytes still to come and caches the value in rcvlowat (0: the
	 * default, 1).  The mark stays on the fd after the op ends, however it
	 * ends, so every receive on an fd that had a `whole` one must go
	 * through the same op, whose cache knows the mark: a fresh op would
	 * assume 1 and wait for bytes that are not coming.  TCP only: a unix
	 * socket takes the mark but its poll ignores it. */
	bool whole;
	int rcvlowat;
	/* engine-private */
	struct iovec cur[XPORT_OP_IOV];
	int curcnt;
};

int xport_ring_init(struct xport_ring *r, unsigned entries, struct mig_error *err);

/* A stream's worker thread with its own ring (transport/stream.c).  Embed
 * it zeroed; start inits the ring (unless already) and runs fn(w) on a
 * thread named `name`; stop joins it, exits the ring (cancelling and
 * reaping what is in flight) and returns the thread's CPU time in ms. */
struct xport_worker {
	struct xport_ring ring;
	pthread_t thread;
	bool started;
	uint64_t cpu_ms;
	void (*fn)(struct xport_worker *w);
	char name[16];
};
int xport_worker_start(struct xport_worker *w, const char *name, unsigned ring_entries,
		       void (*fn)(struct xport_worker *w), struct mig_error *err);
uint64_t xport_worker_stop(struct xport_worker *w);

/* The sending half of a control stream on a ring (transport/stream.c): one
 * frame at a time, sealed with the next seq, its payload copied into the
 * channel's own buffer so the caller's may go at once.  `seq` is the last
 * one sealed (the handshake's, to start with).  Feed every completion of
 * the ring to xport_chan_sent(): true when it was this channel's frame,
 * whose result is then in c->op.res. */
struct xport_aead;
struct xport_chan_tx {
	int fd;
	uint64_t seq;
	struct mig_frame_hdr hdr;
	struct mig_buf buf;
	struct xport_op op;
	bool busy;
	struct xport_aead *aead;  /* a sealed stream's keys (not owned); NULL: clear */
	uint8_t tag[16];
};
int xport_chan_send(struct xport_chan_tx *c, struct xport_ring *ring, uint16_t type,
		    const void *p, size_t len, struct mig_error *err);
bool xport_chan_sent(struct xport_chan_tx *c, const struct xport_op *op);
void xport_chan_free(struct xport_chan_tx *c);

/* The receiving half of a stream on a ring: a frame's header, checked
 * (magic, version, type, flags, length, seq), then its payload, checked
 * (checksum).  Post the header, then give each completion of c->op whose
 * res is >= 0 to step(): 1 when a whole frame passed (header in c->hdr,
 * payload in c->buf), 0 when the payload's receive is posted, <0 on a
 * failed check.  A caller with data outside its frames (PAGES) posts it
 * as XPORT_RX_DATA, and the header after it. */
enum xport_rx_stage { XPORT_RX_HDR, XPORT_RX_PAYLOAD, XPORT_RX_DATA };
struct xport_chan_rx {
	int fd;
	struct xport_ring *ring;
	uint64_t seq;             /* the last frame received */
	struct mig_frame_hdr hdr;
	struct mig_buf buf;
	struct xport_op op;
	enum xport_rx_stage stage;
	void *user;               /* op.user */
	/* a sealed stream's keys (not owned; NULL: clear), the tag of the
	 * frame's payload, and of the data after it (xport_chan_rx_data_tag) */
	struct xport_aead *aead;
	uint8_t tag[16], data_tag[16];
	uint64_t trailer;         /* sealed bytes after the frame, from its header */
};
int xport_chan_rx_post(struct xport_chan_rx *c, enum xport_rx_stage stage, const struct iovec *iov,
		       int iovcnt, struct mig_error *err);
int xport_chan_rx_hdr(struct xport_chan_rx *c, struct mig_error *err);
int xport_chan_rx_step(struct xport_chan_rx *c, struct mig_error *err);
/* A sealed frame's data (XPORT_RX_DATA): its receive takes the tag too,
 * as the last of iov (room for one more iovec needed); after it, open it
 * in place (the iovecs as posted, the tag left out).  Clear streams: the
 * receive as given, and open does nothing. */
int xport_chan_rx_data(struct xport_chan_rx *c, const struct iovec *iov, int iovcnt,
		       struct mig_error *err);
int xport_chan_rx_data_open(struct xport_chan_rx *c, const struct iovec *iov, int iovcnt,
			    struct mig_error *err);
void xport_ring_exit(struct xport_ring *r);
int xport_ring_submit(struct xport_ring *r, struct xport_op *op, struct mig_error *err);
/* Wait for the next op that finished (all bytes, or an error) up to
 * timeout_ms (-1: forever).  -ETIME on timeout with *ret_op NULL. */
int xport_ring_wait(struct xport_ring *r, int timeout_ms, struct xport_op **ret_op,
		    struct mig_error *err);

/* ---- framed connection (control messages; one op at a time) ---- */

struct xport_aead;
struct xport_conn {
	int fd;
	struct xport_ring ring;
	uint64_t tx_seq;   /* last sent */
	uint64_t rx_seq;   /* last received */
	/* once both ends authenticated (NULL: frames in clear): every frame
	 * either way sealed (aead.h); freed with the connection */
	struct xport_aead *aead;
	struct mig_buf sealbuf;   /* a sealed payload on its way out */
};

int xport_conn_init(struct xport_conn *c, int fd, struct mig_error *err);
void xport_conn_close(struct xport_conn *c);
int xport_conn_send(struct xport_conn *c, uint16_t type, uint32_t flags,
		    const void *payload, size_t len, struct mig_error *err);
/* Receives one frame, checked (header, seq, checksum) before it is returned.
 * timeout_ms -1 waits forever; -ETIME on timeout; -EINTR once the flag
 * given to xport_interrupt_on() is set. */
int xport_conn_recv(struct xport_conn *c, struct mig_frame_hdr *ret_hdr, struct mig_buf *payload,
		    int timeout_ms, struct mig_error *err);
/* A command-line tool's signal flag (NULL: none).  While it is set, a
 * connect or a wait for a frame ends with -EINTR within 200 ms instead of
 * going on (Ctrl-C during a long request); sends are not cut short. */
void xport_interrupt_on(const volatile sig_atomic_t *flag);

/* ---- authentication (HMAC-SHA256) ---- */

#define XPORT_MAC_LEN   32
#define XPORT_NONCE_LEN 32
#define XPORT_KEY_MIN   32

void xport_hmac(const void *key, size_t key_len, const struct iovec *iov, int iovcnt,
		uint8_t out[XPORT_MAC_LEN]);
/* Constant-time comparison. */
bool xport_mac_equal(const uint8_t *a, const uint8_t *b, size_t n);
int xport_random(void *buf, size_t n);
/* Reads a key file: at least XPORT_KEY_MIN bytes, at most 4096. */
int xport_key_load(const char *path, struct mig_buf *ret, struct mig_error *err);

/* ---- page codecs ---- */

/* On the wire (mig_outgoing, EVENT): 0 is never a codec. */
enum xport_codec {
	XPORT_CODEC_INVALID = 0,
	XPORT_CODEC_NONE = 1,
	XPORT_CODEC_ZSTD = 2,
	XPORT_CODEC_AUTO = 3,
	_XPORT_CODEC_MAX,
};

struct xport_compress {
	enum xport_codec codec;
	int level;         /* zstd level, default 1 */
};

/* "none", "zstd", "zstd:LEVEL" (1..19), "auto". */
int xport_compress_parse(const char *s, struct xport_compress *ret, struct mig_error *err);
const char *xport_codec_to_string(enum xport_codec c);

#endif
